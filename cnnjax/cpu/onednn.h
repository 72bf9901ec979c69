// What cnnjax's oneDNN kernels (conv.cc, batchnorm.cc) share: the engine, the thread team, the
// lock that runs one primitive at a time, and per-thread scratch buffers.
//
// Threads: oneDNN runs on GNU OpenMP. Every call uses the same team, all the cores this process
// may use ($CNNJAX_ONEDNN_THREADS overrides the size), and calls run one at a time (ExecLock):
// XLA's pool may issue independent calls together (a convolution's input and kernel gradients),
// and two full teams on the same cores would only take turns on them while spinning. The size
// is fixed because a kernel gradient's or a batch statistic's sums are split among the team: a
// size that changed from call to call would change the rounding from run to run, and a resumed
// run would no longer repeat the uninterrupted one bit for bit.

#ifndef CNNJAX_ONEDNN_H_
#define CNNJAX_ONEDNN_H_

#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include "oneapi/dnnl/dnnl.hpp"

namespace cnnjax_onednn {

inline dnnl::engine& Engine() {
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

// The team size of every call: $CNNJAX_ONEDNN_THREADS, or the cores this process may use.
inline int TeamSize() {
  static int n = [] {
    const char* v = std::getenv("CNNJAX_ONEDNN_THREADS");
    int fixed = v ? std::max(0, std::atoi(v)) : 0;
    return fixed ? fixed : std::max(1, omp_get_num_procs());
  }();
  return n;
}

// Held while a primitive runs; sets the calling thread's team size.
class ExecLock {
 public:
  ExecLock() : lock_(Mutex()) { omp_set_num_threads(TeamSize()); }

 private:
  static std::mutex& Mutex() {
    static std::mutex mu;
    return mu;
  }
  std::lock_guard<std::mutex> lock_;
};

// The plan for `key`, made by `make(key)` on first use and kept (one cache per Plan type).
template <typename Plan, typename Key, typename Make>
const Plan& Cached(const Key& key, Make make) {
  static std::mutex mu;
  static std::map<Key, std::unique_ptr<Plan>> plans;
  std::lock_guard<std::mutex> lock(mu);
  auto& slot = plans[key];
  if (!slot) slot = make(key);
  return *slot;
}

inline dnnl::stream& Stream() {
  thread_local dnnl::stream stream(Engine());
  return stream;
}

// A per-thread buffer of at least `bytes` (concurrent calls of one cached primitive each get
// their own).
inline uint8_t* Grow(std::vector<uint8_t>& v, size_t bytes) {
  if (v.size() < bytes) v.resize(bytes);
  return v.data();
}

}  // namespace cnnjax_onednn

#endif  // CNNJAX_ONEDNN_H_
