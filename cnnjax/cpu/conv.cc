// oneDNN convolutions for XLA:CPU through the FFI: forward, backward-data, backward-weights.
//
// Activations are NHWC and weights HWIO (grouped: HWIO with O = G × O/G, oneDNN's hwigo), as
// cnnjax's models hold them, so no transposes are needed. Weights go through a reorder into the
// blocked layout the primitive prefers (they are small next to the activations). Primitives and
// reorders are created once per (pass, shape, dtype, thread count) and cached.
//
// Threads and the one-call-at-a-time lock: onednn.h.
//
// Built by cnnjax/cpu/build.py; the FFI target names carry its VERSION.

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <tuple>
#include <vector>

#include "oneapi/dnnl/dnnl.hpp"
#include "onednn.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;
using dnnl::memory;
using tag = dnnl::memory::format_tag;
using cnnjax_onednn::Engine;
using cnnjax_onednn::Grow;

namespace {

enum Pass : int { kFwd = 0, kBwdData = 1, kBwdWeights = 2 };

// Everything that determines a primitive.
struct Key {
  int pass, dtype, threads;
  int64_t n, h, w, c, kh, kw, o, oh, ow, groups;
  int64_t sh, sw, pt, pb, pl, pr, dh, dw;
  auto tie() const {
    return std::tie(pass, dtype, threads, n, h, w, c, kh, kw, o, oh, ow, groups, sh, sw, pt, pb,
                    pl, pr, dh, dw);
  }
  bool operator<(const Key& other) const { return tie() < other.tie(); }
};

struct Plan {
  dnnl::primitive conv;
  memory::desc act_in, act_out, user_weights, weights;  // weights: the primitive's layout
  memory::desc scratch;
  std::string impl;               // oneDNN's implementation name
  bool reorder;                  // weights' layouts differ
  dnnl::reorder weights_reorder;  // user → primitive (fwd, bwd data) or back (bwd weights)
};

memory::data_type DnnlType(ffi::DataType t) {
  return t == ffi::DataType::BF16 ? memory::data_type::bf16 : memory::data_type::f32;
}

memory::desc WeightsDesc(const Key& k, memory::data_type dt, bool any) {
  if (k.groups == 1) {
    return memory::desc({k.o, k.c, k.kh, k.kw}, dt, any ? tag::any : tag::hwio);
  }
  return memory::desc({k.groups, k.o / k.groups, k.c / k.groups, k.kh, k.kw}, dt,
                      any ? tag::any : tag::hwigo);
}

std::unique_ptr<Plan> MakePlan(const Key& k) {
  auto& eng = Engine();
  auto dt = static_cast<memory::data_type>(k.dtype);
  memory::desc src({k.n, k.c, k.h, k.w}, dt, tag::nhwc);
  memory::desc dst({k.n, k.o, k.oh, k.ow}, dt, tag::nhwc);
  memory::dims strides = {k.sh, k.sw}, dil = {k.dh - 1, k.dw - 1};
  memory::dims pad_l = {k.pt, k.pl}, pad_r = {k.pb, k.pr};
  auto algo = dnnl::algorithm::convolution_direct;
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  auto any_w = WeightsDesc(k, dt, true);
  dnnl::convolution_forward::primitive_desc fwd(
      eng, dnnl::prop_kind::forward_training, algo, src, any_w, dst, strides, dil, pad_l, pad_r,
      attr);
  auto plan = std::make_unique<Plan>();
  plan->user_weights = WeightsDesc(k, dt, false);
  if (k.pass == kFwd) {
    plan->conv = dnnl::convolution_forward(fwd);
    plan->act_in = src, plan->act_out = dst, plan->weights = fwd.weights_desc();
    plan->scratch = fwd.scratchpad_desc();
    plan->impl = fwd.impl_info_str();
  } else if (k.pass == kBwdData) {
    dnnl::convolution_backward_data::primitive_desc pd(eng, algo, src, any_w, dst, strides, dil,
                                                       pad_l, pad_r, fwd, attr);
    plan->conv = dnnl::convolution_backward_data(pd);
    plan->act_in = dst, plan->act_out = src, plan->weights = pd.weights_desc();
    plan->scratch = pd.scratchpad_desc();
    plan->impl = pd.impl_info_str();
  } else {
    dnnl::convolution_backward_weights::primitive_desc pd(eng, algo, src, any_w, dst, strides,
                                                          dil, pad_l, pad_r, fwd, attr);
    plan->conv = dnnl::convolution_backward_weights(pd);
    plan->act_in = src, plan->act_out = dst, plan->weights = pd.diff_weights_desc();
    plan->scratch = pd.scratchpad_desc();
    plan->impl = pd.impl_info_str();
  }
  plan->reorder = plan->weights != plan->user_weights;
  if (plan->reorder) {
    plan->weights_reorder =
        k.pass == kBwdWeights
            ? dnnl::reorder(dnnl::reorder::primitive_desc(eng, plan->weights, eng,
                                                          plan->user_weights))
            : dnnl::reorder(dnnl::reorder::primitive_desc(eng, plan->user_weights, eng,
                                                          plan->weights));
  }
  return plan;
}

const Plan& GetPlan(const Key& k) { return cnnjax_onednn::Cached<Plan>(k, MakePlan); }

// Per-thread buffers: concurrent calls of one cached primitive each get their own.
struct Buffers {
  std::vector<uint8_t> weights, scratch;
};

ffi::Error Run(int pass, ffi::AnyBuffer a, ffi::AnyBuffer b, ffi::AnyBuffer out,
               ffi::Span<const int64_t> window, ffi::Span<const int64_t> pads,
               ffi::Span<const int64_t> dilation, int64_t groups) {
  // fwd: a = x (NHWC), b = w (HWIO), out = y; bwd data: a = dy, b = w, out = dx;
  // bwd weights: a = x, b = dy, out = dw.
  if (window.size() != 2 || pads.size() != 4 || dilation.size() != 2) {
    return ffi::Error(ffi::ErrorCode::kInvalidArgument, "cnnjax_onednn: bad attributes");
  }
  auto x_dims = pass == kBwdData ? out.dimensions() : a.dimensions();
  auto y_dims = pass == kFwd ? out.dimensions() : (pass == kBwdData ? a.dimensions()
                                                                    : b.dimensions());
  auto w_dims = pass == kBwdWeights ? out.dimensions() : b.dimensions();
  Key k{pass, static_cast<int>(DnnlType(a.element_type())), cnnjax_onednn::TeamSize(),
        x_dims[0], x_dims[1], x_dims[2], x_dims[3], w_dims[0], w_dims[1], w_dims[3],
        y_dims[1], y_dims[2], groups, window[0], window[1], pads[0], pads[1], pads[2], pads[3],
        dilation[0], dilation[1]};
  try {
    cnnjax_onednn::ExecLock exec;  // first: oneDNN sizes a primitive's team when it is built
    const Plan& plan = GetPlan(k);
    auto& eng = Engine();
    thread_local Buffers buffers;
    dnnl::stream* stream = &cnnjax_onednn::Stream();
    memory scratch(plan.scratch, eng, Grow(buffers.scratch, plan.scratch.get_size()));
    memory user_w(plan.user_weights, eng,
                  pass == kBwdWeights ? out.untyped_data() : b.untyped_data());
    memory w = user_w;
    if (plan.reorder) w = memory(plan.weights, eng, Grow(buffers.weights, plan.weights.get_size()));
    if (pass == kFwd) {
      if (plan.reorder) plan.weights_reorder.execute(*stream, user_w, w);
      memory src(plan.act_in, eng, a.untyped_data()), dst(plan.act_out, eng, out.untyped_data());
      plan.conv.execute(*stream, {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, w},
                                  {DNNL_ARG_DST, dst}, {DNNL_ARG_SCRATCHPAD, scratch}});
    } else if (pass == kBwdData) {
      if (plan.reorder) plan.weights_reorder.execute(*stream, user_w, w);
      memory dy(plan.act_in, eng, a.untyped_data()), dx(plan.act_out, eng, out.untyped_data());
      plan.conv.execute(*stream, {{DNNL_ARG_DIFF_DST, dy}, {DNNL_ARG_WEIGHTS, w},
                                  {DNNL_ARG_DIFF_SRC, dx}, {DNNL_ARG_SCRATCHPAD, scratch}});
    } else {
      memory src(plan.act_in, eng, a.untyped_data()), dy(plan.act_out, eng, b.untyped_data());
      plan.conv.execute(*stream, {{DNNL_ARG_SRC, src}, {DNNL_ARG_DIFF_DST, dy},
                                  {DNNL_ARG_DIFF_WEIGHTS, w}, {DNNL_ARG_SCRATCHPAD, scratch}});
      if (plan.reorder) plan.weights_reorder.execute(*stream, w, user_w);
    }
    stream->wait();
  } catch (const dnnl::error& e) {
    return ffi::Error(ffi::ErrorCode::kInternal, std::string("cnnjax_onednn: ") + e.what());
  }
  return ffi::Error::Success();
}

ffi::Error Fwd(ffi::AnyBuffer x, ffi::AnyBuffer w, ffi::Result<ffi::AnyBuffer> y,
               ffi::Span<const int64_t> window, ffi::Span<const int64_t> pads,
               ffi::Span<const int64_t> dilation, int64_t groups) {
  return Run(kFwd, x, w, *y, window, pads, dilation, groups);
}

ffi::Error BwdData(ffi::AnyBuffer dy, ffi::AnyBuffer w, ffi::Result<ffi::AnyBuffer> dx,
                   ffi::Span<const int64_t> window, ffi::Span<const int64_t> pads,
                   ffi::Span<const int64_t> dilation, int64_t groups) {
  return Run(kBwdData, dy, w, *dx, window, pads, dilation, groups);
}

ffi::Error BwdWeights(ffi::AnyBuffer x, ffi::AnyBuffer dy, ffi::Result<ffi::AnyBuffer> dw,
                      ffi::Span<const int64_t> window, ffi::Span<const int64_t> pads,
                      ffi::Span<const int64_t> dilation, int64_t groups) {
  return Run(kBwdWeights, x, dy, *dw, window, pads, dilation, groups);
}

#define CNNJAX_BIND                                                                        \
  ffi::Ffi::Bind()                                                                         \
      .Arg<ffi::AnyBuffer>()                                                               \
      .Arg<ffi::AnyBuffer>()                                                               \
      .Ret<ffi::AnyBuffer>()                                                               \
      .Attr<ffi::Span<const int64_t>>("window")                                            \
      .Attr<ffi::Span<const int64_t>>("pads")                                              \
      .Attr<ffi::Span<const int64_t>>("dilation")                                          \
      .Attr<int64_t>("groups")

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(CnnjaxOnednnConvFwd, Fwd, CNNJAX_BIND);
XLA_FFI_DEFINE_HANDLER_SYMBOL(CnnjaxOnednnConvBwdData, BwdData, CNNJAX_BIND);
XLA_FFI_DEFINE_HANDLER_SYMBOL(CnnjaxOnednnConvBwdWeights, BwdWeights, CNNJAX_BIND);

// Whether this CPU runs bfloat16 convolutions (oneDNN finds an implementation for all passes).
extern "C" int cnnjax_onednn_supports_bf16() {
  try {
    Key k{kFwd, static_cast<int>(memory::data_type::bf16), 1, 1, 4, 4, 16, 3, 3, 16, 4, 4, 1,
          1, 1, 1, 1, 1, 1, 1, 1};
    for (int pass : {kFwd, kBwdData, kBwdWeights}) {
      k.pass = pass;
      // Reference implementations emulate bf16 slowly: accept only optimized ones.
      if (MakePlan(k)->impl.find("ref") != std::string::npos) return 0;
    }
    return 1;
  } catch (const dnnl::error&) {
    return 0;
  }
}
