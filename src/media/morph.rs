//! A grey picture grown or shrunk (grey dilation and erosion with a flat footprint): each
//! value the largest (smallest) of those within reach. Reach is a square of side `2·n + 1`
//! (`n` steps over the 8 neighbours) or a diamond of radius `n` (`n` steps over the 4 beside a
//! value: ComfyUI's GrowMask with `tapered_corners`). Values past the picture's edge are left
//! out, which is what SciPy's `grey_dilation`/`grey_erosion` give one 3×3 step at a time
//! (their reflection only brings back values already in reach), so `n` steps of ComfyUI's are
//! one call here. Every call costs a few passes over the picture, whatever `n`: each line
//! takes its running extreme by van Herk and Gil-Werman's blocks.

/// How far one step reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Footprint {
    /// The 8 neighbours: `n` steps reach a square.
    Square,
    /// The 4 beside a value: `n` steps reach a diamond, its corners cut.
    Diamond,
}

/// The largest or the smallest value in reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Extreme {
    Max,
    Min,
}

impl Extreme {
    fn pick(self, a: f32, b: f32) -> f32 {
        match self {
            Self::Max => a.max(b),
            Self::Min => a.min(b),
        }
    }

    /// What stands past the edge: never picked over a value.
    fn neutral(self) -> f32 {
        match self {
            Self::Max => f32::NEG_INFINITY,
            Self::Min => f32::INFINITY,
        }
    }
}

/// `values` (`w`×`h`, row by row) grown by `steps` (shrunk where negative) with `footprint`.
pub fn spread(values: &[f32], w: usize, h: usize, steps: i64, footprint: Footprint) -> Vec<f32> {
    let e = if steps < 0 { Extreme::Min } else { Extreme::Max };
    // Past w + h steps every value reaches every other: more changes nothing.
    let n = usize::try_from(steps.unsigned_abs()).unwrap_or(usize::MAX).min(w + h);
    if n == 0 || w == 0 || h == 0 || values.len() != w * h {
        return values.to_vec();
    }
    match footprint {
        Footprint::Square => square(values, w, h, n, e),
        Footprint::Diamond => diamond(values, w, h, n, e),
    }
}

/// The extreme over the square of side `2·radius + 1` around each value: along rows, then
/// along columns (a row past the edge holds nothing, so clipping each pass is exact).
fn square(values: &[f32], w: usize, h: usize, radius: usize, e: Extreme) -> Vec<f32> {
    let mut out = values.to_vec();
    let mut line = Vec::new();
    let mut run = Running::default();
    for row in out.chunks_mut(w) {
        line.clear();
        line.extend_from_slice(row);
        run.over(&line, radius, e, row);
    }
    let mut column = vec![0f32; h];
    for x in 0..w {
        line.clear();
        line.extend((0..h).map(|y| out[y * w + x]));
        run.over(&line, radius, e, &mut column);
        for (y, v) in column.iter().enumerate() {
            out[y * w + x] = *v;
        }
    }
    out
}

/// The extreme over the diamond of radius `n`. Its even points (`x + y` even) are a square
/// of radius `⌊n/2⌋` turned 45°, taken on the turned grid of each parity ([`turned`]); an
/// odd `n` adds one step over the 4 beside each value (taken first, on the picture widened by
/// one, as values just past the edge reach back in); an even one the odd diamond inside it.
fn diamond(values: &[f32], w: usize, h: usize, n: usize, e: Extreme) -> Vec<f32> {
    let half = n / 2;
    if n % 2 == 0 {
        let even = turned(values, w, h, half, e);
        let odd = diamond(values, w, h, n - 1, e);
        return even.iter().zip(&odd).map(|(a, b)| e.pick(*a, *b)).collect();
    }
    let (pw, ph) = (w + 2, h + 2);
    let mut padded = vec![e.neutral(); pw * ph];
    for (y, row) in values.chunks(w).enumerate() {
        padded[(y + 1) * pw + 1..(y + 1) * pw + 1 + w].copy_from_slice(row);
    }
    let crossed: Vec<f32> = (0..pw * ph)
        .map(|i| {
            let (x, y) = (i % pw, i / pw);
            let mut v = padded[i];
            for (dx, dy) in [(0, 1), (2, 1), (1, 0), (1, 2)] {
                if let (Some(nx), Some(ny)) = ((x + dx).checked_sub(1), (y + dy).checked_sub(1))
                    && nx < pw
                    && ny < ph
                {
                    v = e.pick(v, padded[ny * pw + nx]);
                }
            }
            v
        })
        .collect();
    let grown = turned(&crossed, pw, ph, half, e);
    (0..h).flat_map(|y| grown[(y + 1) * pw + 1..(y + 1) * pw + 1 + w].to_vec()).collect()
}

/// The extreme over the points `(t + s, t − s)`, `|t|, |s| ≤ radius`, around each value: on
/// each parity's grid, `i = (x + y) / 2` and `j = (x − y + h − 1) / 2`, where these offsets
/// are a square, taken as [`square`] takes it; points of that grid off the picture hold the
/// neutral value.
fn turned(values: &[f32], w: usize, h: usize, radius: usize, e: Extreme) -> Vec<f32> {
    if radius == 0 {
        return values.to_vec();
    }
    let mut out = vec![0f32; values.len()];
    let side = (w + h) / 2 + 1;
    for parity in 0..2 {
        let mut grid = vec![e.neutral(); side * side];
        let at = |x: usize, y: usize| ((x + y) / 2) * side + (x + h - 1 - y) / 2;
        let points = || (0..h).flat_map(|y| (0..w).map(move |x| (x, y))).filter(|(x, y)| (x + y) % 2 == parity);
        for (x, y) in points() {
            grid[at(x, y)] = values[y * w + x];
        }
        let grid = square(&grid, side, side, radius, e);
        for (x, y) in points() {
            out[y * w + x] = grid[at(x, y)];
        }
    }
    out
}

/// Buffers for the running extreme of one line (van Herk / Gil-Werman): the line widened
/// by `radius` neutral values each side, cut in blocks of the window's length; each block's
/// extreme so far from its start and from its end, any window one of each.
#[derive(Default)]
struct Running {
    from_start: Vec<f32>,
    from_end: Vec<f32>,
}

impl Running {
    /// The extreme over the `2·radius + 1` values around each of `line`'s, into `out`.
    fn over(&mut self, line: &[f32], radius: usize, e: Extreme, out: &mut [f32]) {
        let n = line.len();
        let r = radius.min(n.saturating_sub(1));
        let k = 2 * r + 1;
        let len = n + 2 * r;
        let at = |j: usize| if (r..r + n).contains(&j) { line[j - r] } else { e.neutral() };
        self.from_start.clear();
        self.from_start.resize(len, 0.0);
        self.from_end.clear();
        self.from_end.resize(len, 0.0);
        for j in 0..len {
            self.from_start[j] = if j % k == 0 { at(j) } else { e.pick(self.from_start[j - 1], at(j)) };
        }
        for j in (0..len).rev() {
            self.from_end[j] =
                if j + 1 == len || (j + 1) % k == 0 { at(j) } else { e.pick(self.from_end[j + 1], at(j)) };
        }
        for (i, o) in out.iter_mut().enumerate().take(n) {
            *o = e.pick(self.from_end[i], self.from_start[i + k - 1]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One 3×3 step as SciPy takes it (footprint clipped at the edge), `steps` times.
    fn stepwise(values: &[f32], w: usize, h: usize, steps: i64, footprint: Footprint) -> Vec<f32> {
        let e = if steps < 0 { Extreme::Min } else { Extreme::Max };
        let mut v = values.to_vec();
        for _ in 0..steps.unsigned_abs() {
            v = (0..w * h)
                .map(|i| {
                    let (x, y) = ((i % w) as i64, (i / w) as i64);
                    let mut best = v[i];
                    for (dx, dy) in [(-1, -1), (0, -1), (1, -1), (-1, 0), (1, 0), (-1, 1), (0, 1), (1, 1)] {
                        let corner = dx != 0 && dy != 0;
                        let (nx, ny) = (x + dx, y + dy);
                        if (footprint == Footprint::Square || !corner)
                            && (0..w as i64).contains(&nx)
                            && (0..h as i64).contains(&ny)
                        {
                            best = e.pick(best, v[(ny * w as i64 + nx) as usize]);
                        }
                    }
                    best
                })
                .collect();
        }
        v
    }

    /// A grey picture with a few spots and an edge, from a fixed sequence.
    fn spots(w: usize, h: usize, seed: u32) -> Vec<f32> {
        let mut s = seed;
        (0..w * h)
            .map(|_| {
                s = s.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                match (s >> 16) % 9 {
                    0 => 1.0,
                    1 => 0.5,
                    2 => 0.25,
                    _ => 0.0,
                }
            })
            .collect()
    }

    #[test]
    fn any_number_of_steps_is_as_many_of_scipys_one_step() {
        for (w, h) in [(9, 7), (1, 6), (6, 1), (12, 5), (4, 11)] {
            let v = spots(w, h, (w * 31 + h) as u32);
            for steps in -9..=9 {
                for footprint in [Footprint::Square, Footprint::Diamond] {
                    assert_eq!(
                        spread(&v, w, h, steps, footprint),
                        stepwise(&v, w, h, steps, footprint),
                        "{w}×{h}, {steps} steps, {footprint:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_dot_grows_into_a_diamond_or_a_square() {
        let (w, h) = (7, 7);
        let mut dot = vec![0f32; w * h];
        dot[3 * w + 3] = 1.0;
        let diamond = spread(&dot, w, h, 2, Footprint::Diamond);
        let square = spread(&dot, w, h, 2, Footprint::Square);
        for (i, (d, s)) in diamond.iter().zip(&square).enumerate() {
            let (dx, dy) = ((i % w).abs_diff(3), (i / w).abs_diff(3));
            assert_eq!(*d, if dx + dy <= 2 { 1.0 } else { 0.0 }, "diamond at {dx},{dy}");
            assert_eq!(*s, if dx.max(dy) <= 2 { 1.0 } else { 0.0 }, "square at {dx},{dy}");
        }
        assert_eq!(spread(&square, w, h, -2, Footprint::Square), dot, "shrinking takes it back");
        assert_eq!(spread(&dot, w, h, 10_000, Footprint::Diamond), vec![1.0; w * h]);
    }
}
