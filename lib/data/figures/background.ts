// The scene behind a figure: a park (sky, grass, trees), an indoor wall over a floor (with or
// without a window), or a plain gradient, each with smooth value noise.
import { BACKGROUND_COLORS, type FigureAttributes, type RGB } from './attributes.js';
import { Canvas, darken, LIGHT_VECTORS, lighten, mix } from './canvas.js';
import { pick, uniform } from './sampling.js';

/** Smooth value noise on a coarse grid, in [-1, 1]. */
function valueNoise(random: () => number, cells: number): (u: number, v: number) => number {
  const grid = new Float32Array((cells + 1) * (cells + 1));
  for (let i = 0; i < grid.length; i++) grid[i] = random() * 2 - 1;
  return (u, v) => {
    const x = Math.min(cells - 1e-6, Math.max(0, u * cells));
    const y = Math.min(cells - 1e-6, Math.max(0, v * cells));
    const i = Math.floor(x);
    const j = Math.floor(y);
    const fx = x - i;
    const fy = y - j;
    const sx = fx * fx * (3 - 2 * fx);
    const sy = fy * fy * (3 - 2 * fy);
    const row = j * (cells + 1) + i;
    const g00 = grid[row]!;
    const g10 = grid[row + 1]!;
    const g01 = grid[row + cells + 1]!;
    const g11 = grid[row + cells + 2]!;
    const top = g00 + (g10 - g00) * sx;
    const bottom = g01 + (g11 - g01) * sx;
    return top + (bottom - top) * sy;
  };
}

/** Fills the canvas with the scene; `groundY` (pixels) is the line the figure stands on, which the horizon or floor stays above. */
export function drawBackground(canvas: Canvas, attrs: FigureAttributes, random: () => number, groundY: number): void {
  const { width: W, height: H } = canvas;
  const color = BACKGROUND_COLORS[attrs.backgroundColor];
  const noise = valueNoise(random, 6);
  const lightX = LIGHT_VECTORS[attrs.lightDir][0];
  switch (attrs.background) {
    case 'park': {
      const horizon = Math.min(groundY - 0.12 * H, H * uniform(random, 0.5, 0.62));
      const sky: RGB = [uniform(random, 0.5, 0.62), uniform(random, 0.7, 0.8), uniform(random, 0.9, 0.98)];
      const trees = Array.from({ length: 1 + Math.floor(random() * 3) }, () => ({
        x: random() * W,
        r: uniform(random, 0.06, 0.12) * H,
        shade: uniform(random, 0.35, 0.55),
      }));
      canvas.each(0, 0, W, H, (px, py, x, y) => {
        const n = noise(px / W, py / H);
        if (py < horizon) {
          const c = mix(lighten(sky, 0.45), sky, 1 - py / horizon);
          canvas.set(x, y, c[0] + 0.02 * n, c[1] + 0.02 * n, c[2] + 0.02 * n);
        } else {
          const depth = (py - horizon) / (H - horizon);
          const c = mix(darken(color, 0.15), lighten(color, 0.05), depth);
          canvas.set(x, y, c[0] + 0.06 * n, c[1] + 0.06 * n, c[2] + 0.04 * n);
        }
      });
      for (const tree of trees) {
        const foliage = darken(mix(color, [0.1, 0.4, 0.12], 0.5), tree.shade);
        canvas.each(tree.x - tree.r, horizon - 2 * tree.r, tree.x + tree.r, horizon, (px, py, x, y) => {
          const dx = (px - tree.x) / tree.r;
          const dy = (py - (horizon - tree.r * 1.1)) / tree.r;
          if (dx * dx + dy * dy < 1) canvas.set(x, y, ...mix(foliage, lighten(foliage, 0.2), Math.max(0, -dx * Math.sign(lightX || 1)) * 0.6));
        });
      }
      break;
    }
    case 'wall': {
      const floor: RGB = pick(random, [
        [0.55, 0.38, 0.22],
        [0.42, 0.3, 0.2],
        [0.6, 0.58, 0.55],
      ] as RGB[]);
      const floorY = Math.min(groundY - 0.06 * H, H * uniform(random, 0.66, 0.78));
      const window = random() < 0.5 ? { x: uniform(random, 0.05, 0.7) * W, y: uniform(random, 0.08, 0.2) * H, w: 0.22 * W, h: 0.26 * H } : null;
      canvas.each(0, 0, W, H, (px, py, x, y) => {
        const n = noise(px / W, py / H);
        if (py < floorY) {
          const glow = 0.12 * lightX * (px / W - 0.5);
          const c = lighten(color, Math.max(0, glow));
          canvas.set(x, y, c[0] * (1 + Math.min(0, glow)) + 0.02 * n, c[1] * (1 + Math.min(0, glow)) + 0.02 * n, c[2] * (1 + Math.min(0, glow)) + 0.02 * n);
        } else {
          const plank = Math.floor(px / (W / 7)) % 2 === 0 ? 0.04 : -0.04;
          const c = mix(floor, darken(floor, 0.25), (py - floorY) / (H - floorY));
          canvas.set(x, y, c[0] + plank + 0.04 * n, c[1] + plank + 0.04 * n, c[2] + plank + 0.04 * n);
        }
        if (Math.abs(py - floorY) < H * 0.012) canvas.set(x, y, ...darken(color, 0.45));
      });
      if (window) {
        canvas.each(window.x, window.y, window.x + window.w, window.y + window.h, (px, py, x, y) => {
          const frame = Math.min(px - window.x, window.x + window.w - px, py - window.y, window.y + window.h - py) < 0.02 * W || Math.abs(px - window.x - window.w / 2) < 0.01 * W;
          canvas.set(x, y, ...(frame ? [0.95, 0.95, 0.93] as RGB : mix([0.62, 0.8, 0.97], [0.85, 0.93, 1], (py - window.y) / window.h)));
        });
      }
      break;
    }
    case 'plain': {
      const top = lighten(color, 0.25);
      const bottom = darken(color, 0.2);
      canvas.each(0, 0, W, H, (px, py, x, y) => {
        const n = noise(px / W, py / H);
        const c = mix(top, bottom, py / H);
        canvas.set(x, y, c[0] + 0.02 * n, c[1] + 0.02 * n, c[2] + 0.02 * n);
      });
      break;
    }
  }
}
