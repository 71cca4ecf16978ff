//! Element-wise kernels of the BERT encoder (`bert.rs`): GELU with a rational `erf`, softmax with
//! a polynomial `exp`, layer norm, and the f32 matrix product.
//!
//! The element-wise kernels are branch-free loops written so that LLVM vectorises them; each is
//! compiled twice, once for the baseline target and once with AVX-512 enabled, and picked at run
//! time (`std::arch::is_x86_feature_detected!`). Both copies come from the same source, so they
//! compute the same formula; the tests hold the formulas against `libm`/`std` within stated
//! bounds. The matrix product is the `gemm` crate's (candle's own back-end), built with its
//! `x86-v4` feature so its AVX-512 micro-kernels are used when the CPU has them.

/// `dst (m × n) += lhs (m × k) · rhsᵀ`, all row-major; `rhs` is `n × k` (a linear layer's
/// weight as stored, out × in). `dst` is read, so fill it with the bias (and residual) first.
pub fn matmul_add_bt(dst: &mut [f32], lhs: &[f32], rhs: &[f32], m: usize, k: usize, n: usize) {
    assert!(dst.len() >= m * n && lhs.len() >= m * k && rhs.len() >= n * k);
    if m == 0 || n == 0 || k == 0 {
        return;
    }
    // SAFETY: the asserts above keep every element the strides reach inside the three slices:
    // dst (i, j) at i·n + j, lhs (i, l) at i·k + l, rhs as k × n with (l, j) at j·k + l; dst does
    // not overlap the inputs (a `&mut` and two `&` slices).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            true,
            lhs.as_ptr(),
            1,
            k as isize,
            rhs.as_ptr(),
            k as isize,
            1,
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// True when this CPU runs the AVX-512 copies of the kernels.
fn avx512() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Defines `pub fn $name` that runs `$imp` (a function of the same arguments, generic over
/// `FMA`) through an AVX-512 copy with fused multiply-adds when the CPU has them, else through
/// the baseline copy with separate multiplies and adds (`f32::mul_add` without the FMA feature
/// is a slow library call).
macro_rules! dispatch {
    ($(#[$doc:meta])* $name:ident, $imp:ident, ($($arg:ident : $ty:ty),*) $(-> $ret:ty)?) => {
        $(#[$doc])*
        pub fn $name($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")]
                fn wide($($arg: $ty),*) $(-> $ret)? {
                    $imp::<true>($($arg),*)
                }
                if avx512() {
                    // SAFETY: the CPU was just checked to have the features `wide` enables.
                    return unsafe { wide($($arg),*) };
                }
            }
            $imp::<false>($($arg),*)
        }
    };
}

dispatch!(
    /// `x ← x · Φ(x) = ½x(1 + erf(x/√2))` (BERT's exact GELU), in place.
    gelu, gelu_imp, (x: &mut [f32])
);
dispatch!(
    /// Each row of `x` (rows of `n`) ← softmax of the row, in place.
    softmax_rows, softmax_rows_imp, (x: &mut [f32], n: usize)
);
dispatch!(
    /// Self-attention of one text: `rows` (n × 3·hid) holds each token's query, key and value
    /// (heads of `hid / heads` side by side); `ctx` (n × hid) ← per head,
    /// softmax(q·kᵀ / √head_dim) · v. `scores` is scratch.
    attend, attend_imp,
    (rows: &[f32], n: usize, heads: usize, ctx: &mut [f32], scores: &mut Vec<f32>)
);
dispatch!(
    /// Each row of `x` (rows of `w.len()`) ← (row − mean) / √(var + eps) · w + b, in place.
    layer_norm, layer_norm_imp, (x: &mut [f32], w: &[f32], b: &[f32], eps: f32)
);

/// a·b + c, fused when `FMA`.
#[inline(always)]
fn madd<const FMA: bool>(a: f32, b: f32, c: f32) -> f32 {
    if FMA { a.mul_add(b, c) } else { a * b + c }
}

#[inline(always)]
fn attend_imp<const FMA: bool>(
    rows: &[f32],
    n: usize,
    heads: usize,
    ctx: &mut [f32],
    scores: &mut Vec<f32>,
) {
    let hid = ctx.len() / n.max(1);
    // n × n scores, then room for one head's keys transposed.
    scores.resize(n * n + hid / heads * n, 0.0);
    for h in 0..heads {
        // MiniLM's heads are 32 wide: a fixed width keeps q, k and the context row in registers.
        if hid / heads == 32 {
            attend_head::<FMA, 32>(rows, n, hid, h, ctx, scores);
        } else {
            attend_head_any::<FMA>(rows, n, hid, heads, h, ctx, scores);
        }
    }
}

/// One head of `attend_imp`, `HD` wide.
#[inline(always)]
fn attend_head<const FMA: bool, const HD: usize>(
    rows: &[f32],
    n: usize,
    hid: usize,
    h: usize,
    ctx: &mut [f32],
    scores: &mut [f32],
) {
    let w3 = 3 * hid;
    let (qo, ko, vo) = (h * HD, hid + h * HD, 2 * hid + h * HD);
    let scale = 1.0 / (HD as f32).sqrt();
    let part = |t: usize, o: usize| -> &[f32; HD] {
        rows[t * w3 + o..t * w3 + o + HD]
            .try_into()
            .expect("HD floats")
    };
    // Keys transposed (HD × n), so a query's scores are HD multiply-adds over contiguous rows
    // (vectorised over the keys) instead of n short dot products and their lane sums.
    let (scores, kt) = scores.split_at_mut(n * n);
    for j in 0..n {
        for (d, &k) in part(j, ko).iter().enumerate() {
            kt[d * n + j] = k;
        }
    }
    for i in 0..n {
        let q = part(i, qo);
        let row = &mut scores[i * n..(i + 1) * n];
        row.fill(0.0);
        for d in 0..HD {
            let qd = q[d] * scale;
            for (s, k) in row.iter_mut().zip(&kt[d * n..(d + 1) * n]) {
                *s = madd::<FMA>(qd, *k, *s);
            }
        }
    }
    softmax_rows_imp::<FMA>(&mut scores[..n * n], n);
    for i in 0..n {
        let mut c = [0f32; HD];
        for j in 0..n {
            let p = scores[i * n + j];
            let v = part(j, vo);
            for d in 0..HD {
                c[d] = madd::<FMA>(p, v[d], c[d]);
            }
        }
        ctx[i * hid + qo..i * hid + qo + HD].copy_from_slice(&c);
    }
}

/// One head of `attend_imp`, any width.
#[inline(always)]
fn attend_head_any<const FMA: bool>(
    rows: &[f32],
    n: usize,
    hid: usize,
    heads: usize,
    h: usize,
    ctx: &mut [f32],
    scores: &mut [f32],
) {
    let (w3, hd) = (3 * hid, hid / heads);
    let scale = 1.0 / (hd as f32).sqrt();
    let (qo, ko, vo) = (h * hd, hid + h * hd, 2 * hid + h * hd);
    for i in 0..n {
        let q = &rows[i * w3 + qo..i * w3 + qo + hd];
        for j in 0..n {
            let k = &rows[j * w3 + ko..j * w3 + ko + hd];
            scores[i * n + j] = dot::<FMA>(q, k) * scale;
        }
    }
    softmax_rows_imp::<FMA>(&mut scores[..n * n], n);
    for i in 0..n {
        let c = &mut ctx[i * hid + qo..i * hid + qo + hd];
        c.fill(0.0);
        for j in 0..n {
            let p = scores[i * n + j];
            let v = &rows[j * w3 + vo..j * w3 + vo + hd];
            for (c, v) in c.iter_mut().zip(v) {
                *c = madd::<FMA>(p, *v, *c);
            }
        }
    }
}

#[inline(always)]
fn gelu_imp<const FMA: bool>(x: &mut [f32]) {
    for v in x.iter_mut() {
        *v = 0.5 * *v * (1.0 + erf::<FMA>(*v * std::f32::consts::FRAC_1_SQRT_2));
    }
}

/// erf(x) as an odd rational function on [−4, 4] (held at its ±4 value beyond, within 2e-7 of
/// ±1); the coefficients are Eigen's `generic_fast_erf_float`. Error against libm's erff: 4.2e-7
/// at worst on [−6, 6] (test: ≤ 5e-7); GELU's own error stays ≤ 1e-6·max(1, |x|) (test).
#[inline(always)]
pub fn erf<const FMA: bool>(x: f32) -> f32 {
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let mut p = -2.726_142_3e-10_f32;
    p = madd::<FMA>(p, x2, 2.770_681_4e-8);
    p = madd::<FMA>(p, x2, -2.101_024e-6);
    p = madd::<FMA>(p, x2, -5.692_506_4e-5);
    p = madd::<FMA>(p, x2, -7.349_906_3e-4);
    p = madd::<FMA>(p, x2, -2.954_599_8e-3);
    p = madd::<FMA>(p, x2, -1.609_603_3e-2);
    let mut q = -1.456_607_2e-5_f32;
    q = madd::<FMA>(q, x2, -2.133_740_6e-4);
    q = madd::<FMA>(q, x2, -1.682_827e-3);
    q = madd::<FMA>(q, x2, -7.373_329e-3);
    q = madd::<FMA>(q, x2, -1.426_474e-2);
    x * p / q
}

/// eˣ for x ≤ 0 (softmax shifts by the row maximum): 2ⁿ · e^r with n = round(x / ln 2),
/// |r| ≤ ln2 / 2, e^r by its degree-7 Taylor polynomial. Relative error ≤ 3e-7 (test); inputs
/// below −87 give 0.
#[inline(always)]
pub fn exp_neg<const FMA: bool>(x: f32) -> f32 {
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Round to nearest through the 1.5·2²³ trick (vectorises, unlike `round`).
    const SHIFT: f32 = 12_582_912.0;
    let x = x.max(-87.0);
    let n = madd::<FMA>(x, std::f32::consts::LOG2_E, SHIFT) - SHIFT;
    let r = madd::<FMA>(n, -LN2_LO, madd::<FMA>(n, -LN2_HI, x));
    let mut p = 1.0 / 5040.0_f32;
    p = madd::<FMA>(p, r, 1.0 / 720.0);
    p = madd::<FMA>(p, r, 1.0 / 120.0);
    p = madd::<FMA>(p, r, 1.0 / 24.0);
    p = madd::<FMA>(p, r, 1.0 / 6.0);
    p = madd::<FMA>(p, r, 0.5);
    p = madd::<FMA>(p, r, 1.0);
    p = madd::<FMA>(p, r, 1.0);
    let scale = f32::from_bits(((n as i32 + 127) as u32) << 23);
    p * scale
}

#[inline(always)]
fn softmax_rows_imp<const FMA: bool>(x: &mut [f32], n: usize) {
    for row in x.chunks_exact_mut(n) {
        let max = max16(row);
        for v in row.iter_mut() {
            *v = exp_neg::<FMA>(*v - max);
        }
        let inv = 1.0 / sum16(row);
        for v in row.iter_mut() {
            *v *= inv;
        }
    }
}

/// Largest element (−∞ for an empty slice), in 16 lanes; `if` rather than `f32::max`, whose
/// NaN rule keeps the loop scalar.
#[inline(always)]
fn max16(x: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; 16];
    let mut chunks = x.chunks_exact(16);
    for c in &mut chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a = if v > *a { v } else { *a };
        }
    }
    let tail = chunks.remainder().iter();
    acc.iter()
        .chain(tail)
        .fold(f32::NEG_INFINITY, |m, &v| if v > m { v } else { m })
}

/// Sum of a slice in 16 lanes (so it vectorises), then the lanes.
#[inline(always)]
fn sum16(x: &[f32]) -> f32 {
    let mut acc = [0f32; 16];
    let mut chunks = x.chunks_exact(16);
    for c in &mut chunks {
        for (a, v) in acc.iter_mut().zip(c) {
            *a += v;
        }
    }
    acc.iter().sum::<f32>() + chunks.remainder().iter().sum::<f32>()
}

#[inline(always)]
fn layer_norm_imp<const FMA: bool>(x: &mut [f32], w: &[f32], b: &[f32], eps: f32) {
    let n = w.len();
    for row in x.chunks_exact_mut(n) {
        let mean = sum16(row) / n as f32;
        for v in row.iter_mut() {
            *v -= mean;
        }
        let mut acc = [0f32; 16];
        let mut chunks = row.chunks_exact(16);
        for c in &mut chunks {
            for (a, v) in acc.iter_mut().zip(c) {
                *a += v * v;
            }
        }
        let var = (acc.iter().sum::<f32>() + chunks.remainder().iter().map(|v| v * v).sum::<f32>())
            / n as f32;
        let inv = 1.0 / (var + eps).sqrt();
        for ((v, w), b) in row.iter_mut().zip(w).zip(b) {
            *v = madd::<FMA>(*v * inv, *w, *b);
        }
    }
}

/// Dot product of two equal-length slices, in 16 lanes.
#[inline(always)]
pub fn dot<const FMA: bool>(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 16];
    let (ca, cb) = (a.chunks_exact(16), b.chunks_exact(16));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..16 {
            acc[i] = madd::<FMA>(x[i], y[i], acc[i]);
        }
    }
    acc.iter().sum::<f32>() + ra.iter().zip(rb).map(|(x, y)| x * y).sum::<f32>()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn erf_matches_libm_everywhere_on_a_fine_grid() {
        let mut worst = 0f32;
        for i in -60_000..=60_000 {
            let x = i as f32 * 1e-4;
            worst = worst.max((erf::<true>(x) - libm::erff(x)).abs());
            worst = worst.max((erf::<false>(x) - libm::erff(x)).abs());
        }
        assert!(worst <= 5e-7, "worst |erf - erff| = {worst}");
        // Beyond ±4 the value is the one at ±4, within 2e-7 of ±1.
        assert!((erf::<true>(9.0) - 1.0).abs() <= 2e-7);
        assert!((erf::<false>(-9.0) + 1.0).abs() <= 2e-7);
    }

    #[test]
    fn exp_matches_std_on_the_softmax_range() {
        let mut worst = 0f32;
        for i in 0..=870_000 {
            let x = -(i as f32) * 1e-4;
            let want = x.exp();
            for got in [exp_neg::<true>(x), exp_neg::<false>(x)] {
                worst = worst.max(((got - want) / want).abs());
            }
        }
        assert!(worst <= 3e-7, "worst relative error {worst}");
        assert_eq!(exp_neg::<true>(-200.0), exp_neg::<true>(-87.0));
        assert!(exp_neg::<false>(-87.0) < 2e-38);
    }

    fn gelu_reference(x: f32) -> f32 {
        (0.5 * x as f64 * (1.0 + libm::erf(x as f64 / std::f64::consts::SQRT_2))) as f32
    }

    proptest! {
        #[test]
        fn gelu_agrees_with_the_f64_formula(xs in prop::collection::vec(-12f32..12.0, 0..100)) {
            let mut got = xs.clone();
            gelu(&mut got);
            let mut base = xs.clone();
            gelu_imp::<false>(&mut base);
            for ((x, g), b) in xs.iter().zip(&got).zip(&base) {
                prop_assert!((g - gelu_reference(*x)).abs() <= 1e-6 * x.abs().max(1.0));
                prop_assert!((g - b).abs() <= 1e-6 * x.abs().max(1.0), "dispatched {g} baseline {b}");
            }
        }

        #[test]
        fn softmax_agrees_with_the_f64_formula(
            xs in prop::collection::vec(-30f32..30.0, 1..300),
        ) {
            let mut got = xs.clone();
            softmax_rows(&mut got, xs.len());
            let max = xs.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v as f64));
            let e: Vec<f64> = xs.iter().map(|&v| (v as f64 - max).exp()).collect();
            let s: f64 = e.iter().sum();
            for (g, e) in got.iter().zip(&e) {
                prop_assert!((*g as f64 - e / s).abs() <= 1e-6);
            }
        }

        #[test]
        fn attention_agrees_with_the_f64_formula(
            n in 1usize..7, heads in 1usize..4, hd in prop::sample::select(vec![1usize, 5, 16, 19, 32]),
            seed in 0u32..1000,
        ) {
            let hid = heads * hd;
            let f = |i: usize| (((i as u32).wrapping_mul(2_654_435_761) ^ seed) % 1000) as f32 / 250.0 - 2.0;
            let rows: Vec<f32> = (0..n * 3 * hid).map(f).collect();
            let mut ctx = vec![f32::NAN; n * hid];
            attend(&rows, n, heads, &mut ctx, &mut Vec::new());
            let mut base = vec![f32::NAN; n * hid];
            attend_imp::<false>(&rows, n, heads, &mut base, &mut Vec::new());
            let at = |t: usize, part: usize, h: usize, d: usize| rows[t * 3 * hid + part * hid + h * hd + d] as f64;
            for h in 0..heads {
                for i in 0..n {
                    let s: Vec<f64> = (0..n)
                        .map(|j| (0..hd).map(|d| at(i, 0, h, d) * at(j, 1, h, d)).sum::<f64>() / (hd as f64).sqrt())
                        .collect();
                    let max = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                    let e: Vec<f64> = s.iter().map(|v| (v - max).exp()).collect();
                    let sum: f64 = e.iter().sum();
                    for d in 0..hd {
                        let want: f64 = (0..n).map(|j| e[j] / sum * at(j, 2, h, d)).sum();
                        for got in [ctx[i * hid + h * hd + d], base[i * hid + h * hd + d]] {
                            prop_assert!((got as f64 - want).abs() <= 1e-4, "{got} vs {want}");
                        }
                    }
                }
            }
        }

        #[test]
        fn layer_norm_agrees_with_the_f64_formula(
            xs in prop::collection::vec(-5f32..5.0, 1..100),
            rows in 1usize..4,
        ) {
            let n = xs.len();
            let x: Vec<f32> = (0..rows).flat_map(|r| xs.iter().map(move |v| v + r as f32)).collect();
            let w: Vec<f32> = (0..n).map(|i| 0.5 + i as f32 * 0.01).collect();
            let b: Vec<f32> = (0..n).map(|i| i as f32 * -0.02).collect();
            let mut got = x.clone();
            layer_norm(&mut got, &w, &b, 1e-12);
            for (row, out) in x.chunks(n).zip(got.chunks(n)) {
                let mean = row.iter().map(|&v| v as f64).sum::<f64>() / n as f64;
                let var = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n as f64;
                for i in 0..n {
                    let want = (row[i] as f64 - mean) / (var + 1e-12).sqrt() * w[i] as f64
                        + b[i] as f64;
                    // A constant row has var 0: every output is then its bias.
                    prop_assert!((out[i] as f64 - want).abs() <= 2e-4 * want.abs().max(1.0));
                }
            }
        }

        #[test]
        fn matmul_and_dot_agree_with_plain_loops(
            m in 1usize..9, k in 1usize..40, n in 1usize..9, seed in 0u32..1000,
        ) {
            let f = |i: usize| (((i as u32).wrapping_mul(2_654_435_761) ^ seed) % 1000) as f32 / 500.0 - 1.0;
            let a: Vec<f32> = (0..m * k).map(f).collect();
            let w: Vec<f32> = (0..n * k).map(|i| f(i + 7)).collect();
            let mut c: Vec<f32> = (0..m * n).map(|i| f(i + 3)).collect();
            let start = c.clone();
            matmul_add_bt(&mut c, &a, &w, m, k, n);
            for i in 0..m {
                for j in 0..n {
                    let want: f32 = start[i * n + j]
                        + (0..k).map(|l| a[i * k + l] * w[j * k + l]).sum::<f32>();
                    prop_assert!((c[i * n + j] - want).abs() <= 1e-4 * k as f32);
                    let d = dot::<false>(&a[i * k..(i + 1) * k], &w[j * k..(j + 1) * k]);
                    prop_assert!((d + start[i * n + j] - want).abs() <= 1e-4 * k as f32);
                }
            }
        }
    }
}
