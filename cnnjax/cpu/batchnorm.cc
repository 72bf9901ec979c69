// oneDNN batch normalization for XLA:CPU through the FFI: the training forward pass (batch
// statistics) and its gradient, over NHWC float32 activations with a per-channel scale and shift.
//
// Forward: y = (x - mean) / sqrt(var + eps) * scale + shift, where mean and var (biased) are over
// N, H and W; it also returns mean and var (for the running averages and the backward pass).
// Backward: dx, dscale and dshift from x, dy, scale and the forward's mean and var. Inference
// (running statistics) stays in XLA, where it is one elementwise fusion.
//
// Threads and the one-call-at-a-time lock: onednn.h. Built by build.py with conv.cc; the FFI
// target names carry its VERSION.

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <tuple>
#include <unordered_map>
#include <vector>

#include "oneapi/dnnl/dnnl.hpp"
#include "onednn.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;
using dnnl::memory;
using tag = dnnl::memory::format_tag;
using cnnjax_onednn::Engine;

namespace {

struct Key {
  bool backward;
  int threads;
  int64_t n, h, w, c;
  float eps;
  auto tie() const { return std::tie(backward, threads, n, h, w, c, eps); }
  bool operator<(const Key& other) const { return tie() < other.tie(); }
};

struct Plan {
  dnnl::primitive prim;
  memory::desc data, stats, scratch;
};

const dnnl::normalization_flags kFlags =
    dnnl::normalization_flags::use_scale | dnnl::normalization_flags::use_shift;

std::unique_ptr<Plan> MakePlan(const Key& k) {
  auto& eng = Engine();
  auto plan = std::make_unique<Plan>();
  plan->data = memory::desc({k.n, k.c, k.h, k.w}, memory::data_type::f32, tag::nhwc);
  plan->stats = memory::desc({k.c}, memory::data_type::f32, tag::a);
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  dnnl::batch_normalization_forward::primitive_desc fwd(
      eng, dnnl::prop_kind::forward_training, plan->data, plan->data, k.eps, kFlags, attr);
  if (!k.backward) {
    plan->prim = dnnl::batch_normalization_forward(fwd);
    plan->scratch = fwd.scratchpad_desc();
  } else {
    dnnl::batch_normalization_backward::primitive_desc bwd(
        eng, dnnl::prop_kind::backward, plan->data, plan->data, plan->data, k.eps, kFlags, fwd,
        attr);
    plan->prim = dnnl::batch_normalization_backward(bwd);
    plan->scratch = bwd.scratchpad_desc();
  }
  return plan;
}

const Plan& GetPlan(const Key& k) { return cnnjax_onednn::Cached<Plan>(k, MakePlan); }

ffi::Error Check(ffi::AnyBuffer x) {
  if (x.dimensions().size() != 4 || x.element_type() != ffi::DataType::F32) {
    return ffi::Error(ffi::ErrorCode::kInvalidArgument,
                      "cnnjax_onednn_bn: takes 4-D float32 NHWC activations");
  }
  return ffi::Error::Success();
}

// args: {DNNL_ARG_..., buffer} pairs, run under the lock with a per-thread scratchpad.
ffi::Error Execute(bool backward, ffi::AnyBuffer x, float eps,
                   std::vector<std::pair<int, void*>> args) {
  auto d = x.dimensions();
  Key k{backward, cnnjax_onednn::TeamSize(), d[0], d[1], d[2], d[3], eps};
  try {
    cnnjax_onednn::ExecLock exec;  // first: oneDNN sizes a primitive's team when it is built
    const Plan& plan = GetPlan(k);
    auto& eng = Engine();
    thread_local std::vector<uint8_t> scratch_buffer;
    std::unordered_map<int, memory> exec_args;
    exec_args.emplace(DNNL_ARG_SCRATCHPAD,
                      memory(plan.scratch, eng,
                             cnnjax_onednn::Grow(scratch_buffer, plan.scratch.get_size())));
    for (auto& [arg, ptr] : args) {
      bool data = arg == DNNL_ARG_SRC || arg == DNNL_ARG_DST || arg == DNNL_ARG_DIFF_SRC ||
                  arg == DNNL_ARG_DIFF_DST;
      exec_args.emplace(arg, memory(data ? plan.data : plan.stats, eng, ptr));
    }
    plan.prim.execute(cnnjax_onednn::Stream(), exec_args);
    cnnjax_onednn::Stream().wait();
  } catch (const dnnl::error& e) {
    return ffi::Error(ffi::ErrorCode::kInternal, std::string("cnnjax_onednn_bn: ") + e.what());
  }
  return ffi::Error::Success();
}

ffi::Error Fwd(ffi::AnyBuffer x, ffi::AnyBuffer scale, ffi::AnyBuffer shift,
               ffi::Result<ffi::AnyBuffer> y, ffi::Result<ffi::AnyBuffer> mean,
               ffi::Result<ffi::AnyBuffer> var, float eps) {
  if (auto e = Check(x); e.failure()) return e;
  return Execute(false, x, eps,
                 {{DNNL_ARG_SRC, x.untyped_data()}, {DNNL_ARG_SCALE, scale.untyped_data()},
                  {DNNL_ARG_SHIFT, shift.untyped_data()}, {DNNL_ARG_DST, y->untyped_data()},
                  {DNNL_ARG_MEAN, mean->untyped_data()},
                  {DNNL_ARG_VARIANCE, var->untyped_data()}});
}

ffi::Error Bwd(ffi::AnyBuffer x, ffi::AnyBuffer dy, ffi::AnyBuffer scale, ffi::AnyBuffer mean,
               ffi::AnyBuffer var, ffi::Result<ffi::AnyBuffer> dx,
               ffi::Result<ffi::AnyBuffer> dscale, ffi::Result<ffi::AnyBuffer> dshift,
               float eps) {
  if (auto e = Check(x); e.failure()) return e;
  return Execute(true, x, eps,
                 {{DNNL_ARG_SRC, x.untyped_data()}, {DNNL_ARG_DIFF_DST, dy.untyped_data()},
                  {DNNL_ARG_SCALE, scale.untyped_data()}, {DNNL_ARG_MEAN, mean.untyped_data()},
                  {DNNL_ARG_VARIANCE, var.untyped_data()},
                  {DNNL_ARG_DIFF_SRC, dx->untyped_data()},
                  {DNNL_ARG_DIFF_SCALE, dscale->untyped_data()},
                  {DNNL_ARG_DIFF_SHIFT, dshift->untyped_data()}});
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(CnnjaxOnednnBnFwd, Fwd,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>()
                                  .Attr<float>("eps"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(CnnjaxOnednnBnBwd, Bwd,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>()
                                  .Attr<float>("eps"));
