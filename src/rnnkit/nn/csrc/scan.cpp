// The time loops of rnnkit.nn.scan's LSTM and GRU layers, compiled: per step one product (the same oneDNN or
// addmm call the Python loop makes) and ONE fused element-wise pass, where the Python loop dispatches about a
// dozen ATen ops a step in forward and twenty in backward; and one inference step of a whole stack
// (rnnkit.nn.fused_step) as one call.  Loaded by rnnkit/nn/compiled.py, which builds this file on first use
// with torch.utils.cpp_extension; the equations, layouts and saved tensors are those of LSTMScan and Scan in
// scan.py and StepWeights in fused_step.py, whose docstrings say what every buffer holds.
//
// Registered as torch.ops.rnnkit_scan.{lstm,gru}_{forward,backward} and stack_step (no Python bindings: the
// library's only include is ATen, so the build is short).

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/library.h>

#include <cmath>
#include <optional>
#include <tuple>
#include <vector>

using at::Tensor;

namespace {

// x w^T (+ bias) (+ add): oneDNN's matmul (mkldnn::_linear_pointwise, as rnnkit.nn.onednn.linear calls it)
// where the caller says so, else addmm.  A new tensor either way.
Tensor linear(const Tensor& x, const Tensor& w, const std::optional<Tensor>& bias, const std::optional<Tensor>& add,
              bool onednn) {
  if (onednn) {
    static const c10::OperatorHandle plain =
        c10::Dispatcher::singleton().findSchemaOrThrow("mkldnn::_linear_pointwise", "");
    static const c10::OperatorHandle binary =
        c10::Dispatcher::singleton().findSchemaOrThrow("mkldnn::_linear_pointwise", "binary");
    std::vector<c10::IValue> stack;
    if (add.has_value()) {
      stack = {x, *add, w, bias, std::string("add")};
      binary.callBoxed(&stack);
    } else {
      stack = {x, w, bias, std::string("none"), c10::List<std::optional<c10::Scalar>>(), std::string("")};
      plain.callBoxed(&stack);
    }
    return stack[0].toTensor();
  }
  if (!add.has_value()) {
    return bias.has_value() ? at::addmm(*bias, x, w.t()) : at::mm(x, w.t());
  }
  Tensor y = at::addmm(*add, x, w.t());
  return bias.has_value() ? y.add_(*bias) : y;
}

// keep (T, B) bool as one contiguous block, or an undefined tensor when every step counts.
inline Tensor contiguous_keep(const std::optional<Tensor>& keep) {
  return keep.has_value() ? keep->contiguous() : Tensor();
}

// exp only ever sees -|a|, which cannot overflow: the file is compiled with -ffast-math (for a vectorised
// exp), under which an overflow to inf is not handled (1 / (1 + exp(100)) came out NaN, not 0).
template <typename T>
inline T sigmoid(T a) {
  const T e = std::exp(-std::abs(a));
  const T s = T(1) / (T(1) + e);
  return a >= T(0) ? s : e * s;
}

// Rows [r0, r1) of a (B, n) pass, on torch's threads when the pass is large enough to pay for the wake-up.
template <typename F>
inline void rows(int64_t B, int64_t width, const F& body) {
  const int64_t grain = std::max<int64_t>(1, (int64_t(1) << 14) / std::max<int64_t>(width, 1));
  at::parallel_for(0, B, grain, body);
}

// One forward step's element-wise work, rows r0..r1: a (B, 4H) pre-activations [i | f | 2 a_g | o] in;
// gates (activated, g as tanh), c', tanh(c') and h' out; where keep is 0 the state is carried unchanged.
template <typename T, bool Save>
void forward_step(const T* a, const T* h, const T* c, const bool* keep, T* gates, T* c_new, T* tc, T* out,
                  int64_t r0, int64_t r1, int64_t H) {
  for (int64_t b = r0; b < r1; ++b) {
    const T* ar = a + b * 4 * H;
    T* gr = gates + b * 4 * H;
    const T* cr = c + b * H;
    T* cn = c_new + b * H;
    T* tr = tc + b * H;
    T* orow = out + b * H;
#pragma omp simd
    for (int64_t j = 0; j < H; ++j) {
      const T i = sigmoid(ar[j]);
      const T f = sigmoid(ar[H + j]);
      const T g = T(2) * sigmoid(ar[2 * H + j]) - T(1);  // tanh(a_g): the g block's weights are doubled
      const T o = sigmoid(ar[3 * H + j]);
      const T cv = f * cr[j] + i * g;
      const T t = T(2) * sigmoid(T(2) * cv) - T(1);
      if (Save) {  // for backward; inference keeps only the state
        gr[j] = i;
        gr[H + j] = f;
        gr[2 * H + j] = g;
        gr[3 * H + j] = o;
        tr[j] = t;
      }
      cn[j] = cv;
      orow[j] = o * t;
    }
    if (keep != nullptr && !keep[b]) {  // a pad: the state stays
      const T* hr = h + b * H;
      for (int64_t j = 0; j < H; ++j) {
        orow[j] = hr[j];
        cn[j] = cr[j];
      }
    }
  }
}

// One backward step, rows r0..r1: from dh, dc (d loss / d h', c') and the step's saved gates, c_prev and
// tanh(c'), the pre-activation gradients [d a_i | d a_f | d a_g | d a_o] (B, 4H), d c_prev, and the part of
// d h_prev that does not go through the product (d_out of the previous step, plus dh where the state froze).
// dc and dc_prev may be one buffer (each element is read before it is written).
template <typename T>
void backward_step(const T* dh, const T* dc, const T* gates, const T* c_prev, const T* tc, const bool* keep,
                   const T* d_out_prev, T* grads, T* dc_prev, T* into, int64_t r0, int64_t r1, int64_t H) {
  for (int64_t b = r0; b < r1; ++b) {
    const T* g4 = gates + b * 4 * H;
    T* d4 = grads + b * 4 * H;
    const T* dhr = dh + b * H;
    const T* dcr = dc + b * H;
    const T* cp = c_prev + b * H;
    const T* tr = tc + b * H;
    T* dcp = dc_prev + b * H;
    const bool live = keep == nullptr || keep[b];
    if (live) {
#pragma omp simd
      for (int64_t j = 0; j < H; ++j) {
        const T i = g4[j], f = g4[H + j], g = g4[2 * H + j], o = g4[3 * H + j];
        const T t = tr[j];
        const T d_h = dhr[j];
        const T dc_all = d_h * o * (T(1) - t * t) + dcr[j];
        d4[j] = dc_all * g * i * (T(1) - i);
        d4[H + j] = dc_all * cp[j] * f * (T(1) - f);
        d4[2 * H + j] = dc_all * i * (T(1) - g * g);
        d4[3 * H + j] = d_h * t * o * (T(1) - o);
        dcp[j] = dc_all * f;
      }
    } else {  // the state froze here: nothing inside, all of dh and dc straight back
      for (int64_t j = 0; j < 4 * H; ++j) d4[j] = T(0);
      for (int64_t j = 0; j < H; ++j) dcp[j] = dcr[j];
    }
    if (into != nullptr) {
      T* ir = into + b * H;
      const T* dp = d_out_prev == nullptr ? nullptr : d_out_prev + b * H;
      for (int64_t j = 0; j < H; ++j) ir[j] = (dp == nullptr ? T(0) : dp[j]) + (live ? T(0) : dhr[j]);
    }
  }
}

// x2 (T*B, I), h0, c0 (B, H), w_ih2, w_hh2 (4H, I / H) with the g blocks doubled, biases (4H,) or none,
// keep (T, B) bool or none.  Returns out (T, B, H), c_n (B, H) and, when train, gates (T, B, 4H), cs and tcs
// (T, B, H); else three empty tensors.  block: steps of the input projection computed at once.
std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor> lstm_forward(
    const Tensor& x2, const Tensor& h0, const Tensor& c0, const Tensor& w_ih2, const Tensor& w_hh2,
    const std::optional<Tensor>& b_ih2, const std::optional<Tensor>& b_hh2, const std::optional<Tensor>& keep,
    bool reverse, bool train, bool onednn_proj, bool onednn_step, int64_t block) {
  const int64_t B = h0.size(0), H = h0.size(1), T = x2.size(0) / B;
  TORCH_CHECK(x2.is_contiguous() && h0.is_contiguous() && c0.is_contiguous() && block >= 1 && T >= 1,
              "lstm_forward: contiguous inputs, block >= 1, at least one step");
  auto opts = x2.options();
  Tensor out = at::empty({T, B, H}, opts);
  Tensor gates = at::empty({train ? T : 1, B, 4 * H}, opts);
  Tensor cs = at::empty({train ? T : 2, B, H}, opts);
  Tensor tcs = at::empty({train ? T : 1, B, H}, opts);
  const Tensor keep_c = contiguous_keep(keep);
  const bool* kp = keep_c.defined() ? keep_c.data_ptr<bool>() : nullptr;
  AT_DISPATCH_FLOATING_TYPES(x2.scalar_type(), "lstm_forward", [&] {
    Tensor proj;
    int64_t proj_block = -1;
    Tensor h = h0;
    const scalar_t* c = c0.data_ptr<scalar_t>();
    scalar_t *gates_p = gates.data_ptr<scalar_t>(), *cs_p = cs.data_ptr<scalar_t>(),
             *tcs_p = tcs.data_ptr<scalar_t>(), *out_p = out.data_ptr<scalar_t>();
    for (int64_t k = 0; k < T; ++k) {
      const int64_t t = reverse ? T - 1 - k : k;
      const int64_t blk = t / block;
      if (blk != proj_block) {  // the input projection of `block` steps at once (see _Projection in scan.py)
        const int64_t s0 = blk * block, s1 = std::min(T, s0 + block);
        proj = linear(x2.slice(0, s0 * B, s1 * B), w_ih2, b_ih2, std::nullopt, onednn_proj);
        proj_block = blk;
      }
      Tensor p = proj.slice(0, (t - blk * block) * B, (t - blk * block + 1) * B);
      Tensor a = linear(h, w_hh2, b_hh2, p, onednn_step);  // (B, 4H)
      const scalar_t *ap = a.data_ptr<scalar_t>(), *hp = h.data_ptr<scalar_t>();
      scalar_t* gp = gates_p + (train ? t : 0) * B * 4 * H;
      scalar_t* cn = cs_p + (train ? t : k % 2) * B * H;
      scalar_t* tp = tcs_p + (train ? t : 0) * B * H;
      scalar_t* op = out_p + t * B * H;
      const bool* kt = kp == nullptr ? nullptr : kp + t * B;
      rows(B, 4 * H, [&](int64_t r0, int64_t r1) {
        if (train) {
          forward_step<scalar_t, true>(ap, hp, c, kt, gp, cn, tp, op, r0, r1, H);
        } else {
          forward_step<scalar_t, false>(ap, hp, c, kt, gp, cn, tp, op, r0, r1, H);
        }
      });
      h = out[t];
      c = cn;
    }
  });
  Tensor c_n = (train ? cs[reverse ? 0 : T - 1] : cs[(T - 1) % 2]).clone();
  if (!train) return {out, c_n, Tensor(), Tensor(), Tensor()};
  return {out, c_n, gates, cs, tcs};
}

// The backward time loop: fills grads (T, B, 4H) with every step's pre-activation gradients and returns
// (d h0, d c0).  w_t: W_hh^T (H, 4H) contiguous; d_out (T, B, H); d_cn (B, H).
std::tuple<Tensor, Tensor> lstm_backward(
    const Tensor& d_out, const Tensor& d_cn, const Tensor& gates, const Tensor& cs, const Tensor& tcs,
    const Tensor& c0, const Tensor& w_t, const std::optional<Tensor>& keep, const Tensor& grads, bool reverse,
    bool onednn_step) {
  const int64_t T = d_out.size(0), B = d_out.size(1), H = d_out.size(2);
  TORCH_CHECK(d_out.is_contiguous() && grads.is_contiguous() && gates.is_contiguous() && cs.is_contiguous() &&
                  tcs.is_contiguous() && c0.is_contiguous() && T >= 1,
              "lstm_backward: contiguous inputs, at least one step");
  const Tensor keep_c = contiguous_keep(keep);
  const bool* kp = keep_c.defined() ? keep_c.data_ptr<bool>() : nullptr;
  auto order = [&](int64_t k) { return reverse ? T - 1 - k : k; };
  Tensor dh = d_out[order(T - 1)];
  Tensor dc = d_cn.contiguous().clone();  // updated in place, step by step: d c_prev
  Tensor into_buf = kp == nullptr ? Tensor() : at::empty({B, H}, d_out.options());
  AT_DISPATCH_FLOATING_TYPES(d_out.scalar_type(), "lstm_backward", [&] {
    const scalar_t *gates_p = gates.data_ptr<scalar_t>(), *cs_p = cs.data_ptr<scalar_t>(),
                   *tcs_p = tcs.data_ptr<scalar_t>(), *c0_p = c0.data_ptr<scalar_t>(),
                   *dout_p = d_out.data_ptr<scalar_t>();
    scalar_t *grads_p = grads.data_ptr<scalar_t>(), *dc_p = dc.data_ptr<scalar_t>();
    for (int64_t k = T - 1; k >= 0; --k) {
      const int64_t t = order(k);
      const scalar_t* c_prev = k == 0 ? c0_p : cs_p + order(k - 1) * B * H;
      const scalar_t* d_out_prev = k > 0 ? dout_p + order(k - 1) * B * H : nullptr;
      const scalar_t* dhp = dh.data_ptr<scalar_t>();
      scalar_t* grp = grads_p + t * B * 4 * H;
      // without keep, what d h_prev gets beside the product is the previous step's d_out as it stands
      scalar_t* ip = kp == nullptr ? nullptr : into_buf.data_ptr<scalar_t>();
      const bool* kt = kp == nullptr ? nullptr : kp + t * B;
      rows(B, 4 * H, [&](int64_t r0, int64_t r1) {
        backward_step(dhp, dc_p, gates_p + t * B * 4 * H, c_prev, tcs_p + t * B * H, kt, d_out_prev, grp, dc_p,
                      ip, r0, r1, H);
      });
      std::optional<Tensor> add;
      if (kp != nullptr) {
        add = into_buf;
      } else if (k > 0) {
        add = d_out[order(k - 1)];
      }
      dh = linear(grads[t], w_t, std::nullopt, add, onednn_step);
    }
  });
  return {dh, dc};
}

// One GRU forward step, rows r0..r1 (see Scan in scan.py): g (B, 3H) is the hidden product
// [W_hr h + b_hr | W_hz h + b_hz | 2 (W_hn h + b_hn)], p (B, 3H) the step's input projection
// [x_r | x_z | 2 x_n].  Writes [r | z | 2 hn] to gates, n to ns and h' to out.
template <typename T, bool Save>
void gru_forward_step(const T* g, const T* p, const T* h, const bool* keep, T* gates, T* ns, T* out, int64_t r0,
                      int64_t r1, int64_t H) {
  for (int64_t b = r0; b < r1; ++b) {
    const T* gr = g + b * 3 * H;
    const T* pr = p + b * 3 * H;
    const T* hr = h + b * H;
    T* sr = gates + b * 3 * H;
    T* nr = ns + b * H;
    T* orow = out + b * H;
#pragma omp simd
    for (int64_t j = 0; j < H; ++j) {
      const T r = sigmoid(gr[j] + pr[j]);
      const T z = sigmoid(gr[H + j] + pr[H + j]);
      const T hn2 = gr[2 * H + j];
      const T n = T(2) * sigmoid(pr[2 * H + j] + r * hn2) - T(1);  // tanh(x_n + r hn), both halves doubled
      if (Save) {  // for backward
        sr[j] = r;
        sr[H + j] = z;
        sr[2 * H + j] = hn2;
        nr[j] = n;
      }
      orow[j] = n + z * (hr[j] - n);
    }
    if (keep != nullptr && !keep[b]) {
      for (int64_t j = 0; j < H; ++j) orow[j] = hr[j];
    }
  }
}

// One GRU backward step, rows r0..r1: grads (B, 4H) gets [d hn | d x_r | d x_z | d x_n], hidden (B, 3H) its
// first 3H columns again (contiguous, for the product), into the part of d h_prev outside the product.
template <typename T>
void gru_backward_step(const T* dh, const T* gates, const T* n_, const T* hp, const bool* keep,
                       const T* d_out_prev, T* grads, T* hidden, T* into, int64_t r0, int64_t r1, int64_t H) {
  for (int64_t b = r0; b < r1; ++b) {
    const T* s3 = gates + b * 3 * H;
    const T* dhr = dh + b * H;
    const T* nr = n_ + b * H;
    const T* hpr = hp + b * H;
    T* d4 = grads + b * 4 * H;
    T* d3 = hidden + b * 3 * H;
    T* ir = into + b * H;
    const T* dp = d_out_prev == nullptr ? nullptr : d_out_prev + b * H;
    const bool live = keep == nullptr || keep[b];
    if (live) {
#pragma omp simd
      for (int64_t j = 0; j < H; ++j) {
        const T r = s3[j], z = s3[H + j], hn2 = s3[2 * H + j], n = nr[j], d_h = dhr[j];
        const T d_xn = d_h * (T(1) - z) * (T(1) - n * n);
        const T d_hn = d_xn * r;
        const T d_xr = T(0.5) * d_xn * hn2 * r * (T(1) - r);
        const T d_xz = d_h * (hpr[j] - n) * z * (T(1) - z);
        d4[j] = d_hn;
        d4[H + j] = d_xr;
        d4[2 * H + j] = d_xz;
        d4[3 * H + j] = d_xn;
        d3[j] = d_hn;
        d3[H + j] = d_xr;
        d3[2 * H + j] = d_xz;
        ir[j] = (dp == nullptr ? T(0) : dp[j]) + d_h * z;
      }
    } else {  // the state froze: all of dh straight back
      for (int64_t j = 0; j < 4 * H; ++j) d4[j] = T(0);
      for (int64_t j = 0; j < 3 * H; ++j) d3[j] = T(0);
      for (int64_t j = 0; j < H; ++j) ir[j] = (dp == nullptr ? T(0) : dp[j]) + dhr[j];
    }
  }
}

// x2 (T*B, I), h0 (B, H), w_ih2, w_hh2 (3H, I / H) and biases with the n blocks doubled, keep (T, B) or none.
// Returns out (T, B, H) and, when train, gates (T, B, 3H) [r | z | 2 hn] and ns (T, B, H); else empty tensors.
std::tuple<Tensor, Tensor, Tensor> gru_forward(
    const Tensor& x2, const Tensor& h0, const Tensor& w_ih2, const Tensor& w_hh2, const std::optional<Tensor>& b_ih2,
    const std::optional<Tensor>& b_hh2, const std::optional<Tensor>& keep, bool reverse, bool train,
    bool onednn_proj, bool onednn_step, int64_t block) {
  const int64_t B = h0.size(0), H = h0.size(1), T = x2.size(0) / B;
  TORCH_CHECK(x2.is_contiguous() && h0.is_contiguous() && block >= 1 && T >= 1,
              "gru_forward: contiguous inputs, block >= 1, at least one step");
  auto opts = x2.options();
  Tensor out = at::empty({T, B, H}, opts);
  Tensor gates = at::empty({train ? T : 1, B, 3 * H}, opts);
  Tensor ns = at::empty({train ? T : 1, B, H}, opts);
  const Tensor keep_c = contiguous_keep(keep);
  const bool* kp = keep_c.defined() ? keep_c.data_ptr<bool>() : nullptr;
  AT_DISPATCH_FLOATING_TYPES(x2.scalar_type(), "gru_forward", [&] {
    Tensor proj;
    int64_t proj_block = -1;
    Tensor h = h0;
    scalar_t *gates_p = gates.data_ptr<scalar_t>(), *ns_p = ns.data_ptr<scalar_t>(),
             *out_p = out.data_ptr<scalar_t>();
    for (int64_t k = 0; k < T; ++k) {
      const int64_t t = reverse ? T - 1 - k : k;
      const int64_t blk = t / block;
      if (blk != proj_block) {
        const int64_t s0 = blk * block, s1 = std::min(T, s0 + block);
        proj = linear(x2.slice(0, s0 * B, s1 * B), w_ih2, b_ih2, std::nullopt, onednn_proj);
        proj_block = blk;
      }
      const scalar_t* pp = proj.data_ptr<scalar_t>() + (t - blk * block) * B * 3 * H;
      Tensor g = linear(h, w_hh2, b_hh2, std::nullopt, onednn_step);  // (B, 3H)
      const scalar_t *gp = g.data_ptr<scalar_t>(), *hp = h.data_ptr<scalar_t>();
      scalar_t* sp = gates_p + (train ? t : 0) * B * 3 * H;
      scalar_t* np = ns_p + (train ? t : 0) * B * H;
      scalar_t* op = out_p + t * B * H;
      const bool* kt = kp == nullptr ? nullptr : kp + t * B;
      rows(B, 3 * H, [&](int64_t r0, int64_t r1) {
        if (train) {
          gru_forward_step<scalar_t, true>(gp, pp, hp, kt, sp, np, op, r0, r1, H);
        } else {
          gru_forward_step<scalar_t, false>(gp, pp, hp, kt, sp, np, op, r0, r1, H);
        }
      });
      h = out[t];
    }
  });
  if (!train) return {out, Tensor(), Tensor()};
  return {out, gates, ns};
}

// The GRU backward time loop: fills grads (T, B, 4H) [d hn | d x_r | d x_z | d x_n] and returns d h0.
// w_nrz_t: W_hh with its gate blocks in the order n, r, z, transposed (H, 3H), contiguous.
Tensor gru_backward(const Tensor& d_out, const Tensor& gates, const Tensor& ns, const Tensor& out, const Tensor& h0,
                    const Tensor& w_nrz_t, const std::optional<Tensor>& keep, const Tensor& grads, bool reverse,
                    bool onednn_step) {
  const int64_t T = d_out.size(0), B = d_out.size(1), H = d_out.size(2);
  TORCH_CHECK(d_out.is_contiguous() && grads.is_contiguous() && gates.is_contiguous() && ns.is_contiguous() &&
                  out.is_contiguous() && h0.is_contiguous() && T >= 1,
              "gru_backward: contiguous inputs, at least one step");
  const Tensor keep_c = contiguous_keep(keep);
  const bool* kp = keep_c.defined() ? keep_c.data_ptr<bool>() : nullptr;
  auto order = [&](int64_t k) { return reverse ? T - 1 - k : k; };
  Tensor dh = d_out[order(T - 1)];
  Tensor hidden = at::empty({B, 3 * H}, d_out.options());
  Tensor into = at::empty({B, H}, d_out.options());
  AT_DISPATCH_FLOATING_TYPES(d_out.scalar_type(), "gru_backward", [&] {
    const scalar_t *gates_p = gates.data_ptr<scalar_t>(), *ns_p = ns.data_ptr<scalar_t>(),
                   *out_p = out.data_ptr<scalar_t>(), *h0_p = h0.data_ptr<scalar_t>(),
                   *dout_p = d_out.data_ptr<scalar_t>();
    scalar_t *grads_p = grads.data_ptr<scalar_t>(), *hid_p = hidden.data_ptr<scalar_t>(),
             *into_p = into.data_ptr<scalar_t>();
    for (int64_t k = T - 1; k >= 0; --k) {
      const int64_t t = order(k);
      const scalar_t* hp = k == 0 ? h0_p : out_p + order(k - 1) * B * H;
      const scalar_t* d_out_prev = k > 0 ? dout_p + order(k - 1) * B * H : nullptr;
      const scalar_t* dhp = dh.data_ptr<scalar_t>();
      const bool* kt = kp == nullptr ? nullptr : kp + t * B;
      rows(B, 4 * H, [&](int64_t r0, int64_t r1) {
        gru_backward_step(dhp, gates_p + t * B * 3 * H, ns_p + t * B * H, hp, kt, d_out_prev,
                          grads_p + t * B * 4 * H, hid_p, into_p, r0, r1, H);
      });
      dh = linear(hidden, w_nrz_t, std::nullopt, into, onednn_step);
    }
  });
  return dh;
}

// ---- one time step of a stacked RNN / LSTM / GRU for inference (rnnkit.nn.fused_step's StepWeights) ----
//
// Sampling runs a stack one token at a time on one row, where a step is a few matrix-vector products and
// the Python step (fused_step.step) still dispatches some twenty small operations.  Here a whole step of
// the stack is one call: per layer, the units are shared among torch's threads (when the layer is large
// enough to pay for a second one), and each thread computes the gate columns of its own units — input and
// hidden products and biases — and their element-wise step, so a layer needs no exchange until the next
// layer reads its output.  Column layout and scaling as StepWeights: the blocks that feed a tanh carry a
// factor -2, so every activation is a sigmoid and tanh(a) = 1 - 2 sigmoid(-2 a).

// acc (B, n, row stride ld_acc) += x (B, K) @ w[:, 0:n] with w (K, ld_w) row-major; four rows of w a pass,
// so that each pass over acc does four multiply-adds.
template <typename T>
void add_product(const T* x, int64_t B, int64_t K, const T* w, int64_t ld_w, int64_t n, T* acc, int64_t ld_acc) {
  int64_t k = 0;
  for (; k + 4 <= K; k += 4) {
    const T* w0 = w + k * ld_w;
    const T* w1 = w0 + ld_w;
    const T* w2 = w1 + ld_w;
    const T* w3 = w2 + ld_w;
    for (int64_t b = 0; b < B; ++b) {
      const T* xb = x + b * K + k;
      const T x0 = xb[0], x1 = xb[1], x2 = xb[2], x3 = xb[3];
      T* ar = acc + b * ld_acc;
#pragma omp simd
      for (int64_t j = 0; j < n; ++j) ar[j] += (x0 * w0[j] + x1 * w1[j]) + (x2 * w2[j] + x3 * w3[j]);
    }
  }
  for (; k < K; ++k) {
    const T* w0 = w + k * ld_w;
    for (int64_t b = 0; b < B; ++b) {
      const T x0 = x[b * K + k];
      T* ar = acc + b * ld_acc;
#pragma omp simd
      for (int64_t j = 0; j < n; ++j) ar[j] += x0 * w0[j];
    }
  }
}

// Units [u0, u1) of one layer: for each of the G gate blocks g, acc (B, G, n) starts from start's columns
// g*H + u0 .. g*H + u1 (row stride ld_start; 0: one bias for every row) and gets the input and hidden products
// of the same columns.
template <typename T>
void gate_columns(const T* start, int64_t ld_start, const T* x, int64_t K, const T* wx, const T* h, const T* wh,
                  int64_t B, int64_t G, int64_t H, int64_t u0, int64_t u1, T* acc) {
  const int64_t n = u1 - u0, GH = G * H;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t g = 0; g < G; ++g)
      for (int64_t j = 0; j < n; ++j) acc[(b * G + g) * n + j] = start[b * ld_start + g * H + u0 + j];
  for (int64_t g = 0; g < G; ++g) {
    if (x != nullptr) add_product(x, B, K, wx + g * H + u0, GH, n, acc + g * n, G * n);
    if (h != nullptr) add_product(h, B, H, wh + g * H + u0, GH, n, acc + g * n, G * n);
  }
}

// stack_step's work for one dtype (out of the dispatch macro: pragmas cannot stand in a macro's argument).
template <typename T>
void stack_step_impl(int64_t mode, int64_t G, const Tensor& f, const Tensor& x0, at::TensorList wx, at::TensorList bx,
                     const Tensor& wh, const Tensor& bh, const Tensor& h, const Tensor& c, Tensor& h_new,
                     Tensor& c_new) {
  const int64_t L = h.size(0), B = h.size(1), H = h.size(2);
  const int64_t GH = G * H;
  for (int64_t l = 0; l < L; ++l) {
    const Tensor w_x = wx[l].contiguous(), b_x = bx[l].contiguous();
    const bool use_first = l == 0 && f.defined();
    const T* xin = l > 0 ? h_new.data_ptr<T>() + (l - 1) * B * H : use_first ? nullptr : x0.data_ptr<T>();
    const int64_t K = l > 0 ? H : use_first ? 0 : x0.size(1);
    TORCH_CHECK(use_first || (w_x.size(0) == K && w_x.size(1) == GH), "stack_step: wx[", l, "] has the wrong shape");
    const T* wxp = use_first ? nullptr : w_x.data_ptr<T>();
    const T* hp = h.data_ptr<T>() + l * B * H;
    const T* whp = wh.data_ptr<T>() + l * H * GH;
    const T* bxp = b_x.data_ptr<T>();
    const T* bhp = mode == 1 ? bh.data_ptr<T>() + l * GH : nullptr;
    const T* cp = mode == 0 ? c.data_ptr<T>() + l * B * H : nullptr;
    T* hn = h_new.data_ptr<T>() + l * B * H;
    T* cn = mode == 0 ? c_new.data_ptr<T>() + l * B * H : nullptr;
    // Threads share the units in blocks of 16, so that any split cuts the vectorised loops at the same places
    // and a step gives the same bits on any number of threads; a thread's share is worth its wake-up from
    // about 2^18 weight entries (1 MiB of float32).
    constexpr int64_t kUnits = 16;
    const int64_t blocks = (H + kUnits - 1) / kUnits;
    const int64_t grain = std::max<int64_t>(1, (int64_t(1) << 18) / std::max<int64_t>(1, G * (K + H) * kUnits));
    at::parallel_for(0, blocks, grain, [&](int64_t k0, int64_t k1) {
      const int64_t u0 = k0 * kUnits, u1 = std::min(H, k1 * kUnits), n = u1 - u0;
      std::vector<T> in(B * G * n), hid(mode == 1 ? B * G * n : 0);
      // the input side starts from the first layer's rows (bias included) or from the bias, the same for every row
      const T* start = use_first ? f.data_ptr<T>() : bxp;
      const int64_t ld_start = use_first ? GH : 0;
      if (mode == 1) {  // a GRU keeps the input and hidden sides apart: r multiplies the hidden side of n
        gate_columns<T>(start, ld_start, xin, K, wxp, nullptr, nullptr, B, G, H, u0, u1, in.data());
        gate_columns<T>(bhp, 0, nullptr, 0, nullptr, hp, whp, B, G, H, u0, u1, hid.data());
      } else {
        gate_columns<T>(start, ld_start, xin, K, wxp, hp, whp, B, G, H, u0, u1, in.data());
      }
      for (int64_t b = 0; b < B; ++b) {
        const T* a = in.data() + b * G * n;
        const T* hprev = hp + b * H + u0;
        T* out = hn + b * H + u0;
        if (mode == 0) {
          const T* cprev = cp + b * H + u0;
          T* cnew = cn + b * H + u0;
#pragma omp simd
          for (int64_t j = 0; j < n; ++j) {
            const T i = sigmoid(a[j]), fg = sigmoid(a[n + j]), s = sigmoid(a[2 * n + j]), o = sigmoid(a[3 * n + j]);
            const T cj = fg * cprev[j] + i * (T(1) - T(2) * s);
            cnew[j] = cj;
            out[j] = o * (T(1) - T(2) * sigmoid(T(-2) * cj));
          }
        } else if (mode == 1) {
          const T* hd = hid.data() + b * G * n;
#pragma omp simd
          for (int64_t j = 0; j < n; ++j) {
            const T r = sigmoid(a[j] + hd[j]), z = sigmoid(a[n + j] + hd[n + j]);
            const T nj = T(1) - T(2) * sigmoid(a[2 * n + j] + r * hd[2 * n + j]);
            out[j] = nj + z * (hprev[j] - nj);
          }
        } else if (mode == 2) {
#pragma omp simd
          for (int64_t j = 0; j < n; ++j) out[j] = T(1) - T(2) * sigmoid(a[j]);
        } else {
#pragma omp simd
          for (int64_t j = 0; j < n; ++j) out[j] = a[j] > T(0) ? a[j] : T(0);
        }
      }
    });
  }
}

// mode 0 LSTM, 1 GRU, 2 RNN tanh, 3 RNN relu.  first (B, G*H): layer 0's input product with its bias (a row
// of StepWeights.table), or none, then x (B, I) is multiplied by wx[0].  wx: per layer (I_l, G*H); bx: per
// layer (G*H,), the bias on the input side; wh (L, H, G*H); bh (L, G*H), a GRU's bias inside its reset gate
// ([0 | 0 | b_hn], scaled), none otherwise; h, c (L, B, H).  Returns h' and c' (L, B, H) (c' empty but for
// an LSTM).
std::tuple<Tensor, Tensor> stack_step(int64_t mode, const std::optional<Tensor>& first, const std::optional<Tensor>& x_in,
                                      at::TensorList wx, at::TensorList bx, const Tensor& wh_in,
                                      const std::optional<Tensor>& bh_in, const Tensor& h_in,
                                      const std::optional<Tensor>& c_in) {
  const int64_t L = h_in.size(0), B = h_in.size(1), H = h_in.size(2);
  const int64_t G = mode == 0 ? 4 : mode == 1 ? 3 : 1;
  TORCH_CHECK(mode >= 0 && mode <= 3, "stack_step: mode must be 0..3");
  TORCH_CHECK(int64_t(wx.size()) == L && int64_t(bx.size()) == L && wh_in.size(0) == L && wh_in.size(2) == G * H,
              "stack_step: weights do not match the state");
  TORCH_CHECK(first.has_value() || x_in.has_value(), "stack_step: give first or x");
  TORCH_CHECK(mode != 0 || c_in.has_value(), "stack_step: an LSTM needs c");
  TORCH_CHECK(mode != 1 || bh_in.has_value(), "stack_step: a GRU needs bh");
  const Tensor h = h_in.contiguous(), wh = wh_in.contiguous();
  const Tensor c = mode == 0 ? c_in->contiguous() : Tensor();
  const Tensor bh = mode == 1 ? bh_in->contiguous() : Tensor();
  const Tensor f = first.has_value() ? first->contiguous() : Tensor();
  const Tensor x0 = first.has_value() ? Tensor() : x_in->contiguous();
  Tensor h_new = at::empty_like(h);
  Tensor c_new = mode == 0 ? at::empty_like(c) : at::empty({0}, h.options());
  AT_DISPATCH_FLOATING_TYPES(h.scalar_type(), "stack_step", [&] {
    stack_step_impl<scalar_t>(mode, G, f, x0, wx, bx, wh, bh, h, c, h_new, c_new);
  });
  return {h_new, c_new};
}

}  // namespace

TORCH_LIBRARY(rnnkit_scan, m) {
  m.def("lstm_forward(Tensor x2, Tensor h0, Tensor c0, Tensor w_ih2, Tensor w_hh2, Tensor? b_ih2, Tensor? b_hh2, "
        "Tensor? keep, bool reverse, bool train, bool onednn_proj, bool onednn_step, int block) "
        "-> (Tensor, Tensor, Tensor, Tensor, Tensor)");
  m.def("lstm_backward(Tensor d_out, Tensor d_cn, Tensor gates, Tensor cs, Tensor tcs, Tensor c0, Tensor w_t, "
        "Tensor? keep, Tensor grads, bool reverse, bool onednn_step) -> (Tensor, Tensor)");
  m.def("gru_forward(Tensor x2, Tensor h0, Tensor w_ih2, Tensor w_hh2, Tensor? b_ih2, Tensor? b_hh2, Tensor? keep, "
        "bool reverse, bool train, bool onednn_proj, bool onednn_step, int block) -> (Tensor, Tensor, Tensor)");
  m.def("gru_backward(Tensor d_out, Tensor gates, Tensor ns, Tensor out, Tensor h0, Tensor w_nrz_t, Tensor? keep, "
        "Tensor grads, bool reverse, bool onednn_step) -> Tensor");
  m.def("stack_step(int mode, Tensor? first, Tensor? x, Tensor[] wx, Tensor[] bx, Tensor wh, Tensor? bh, Tensor h, "
        "Tensor? c) -> (Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(rnnkit_scan, CPU, m) {
  m.impl("lstm_forward", &lstm_forward);
  m.impl("lstm_backward", &lstm_backward);
  m.impl("gru_forward", &gru_forward);
  m.impl("gru_backward", &gru_backward);
  m.impl("stack_step", &stack_step);
}
