// The rasteriser's primitives: a supersampled RGB canvas, one-light Lambert shading, shaded
// capsules, spheres and rounded hulls, ground shadows, and colour arithmetic.
import type { LightDirection, RGB } from './attributes.js';
import { normalize, type Vec3 } from './skeleton.js';

export class Canvas {
  readonly data: Float32Array;
  constructor(
    readonly width: number,
    readonly height: number,
  ) {
    this.data = new Float32Array(width * height * 3);
  }

  set(x: number, y: number, r: number, g: number, b: number): void {
    const i = (y * this.width + x) * 3;
    this.data[i] = r;
    this.data[i + 1] = g;
    this.data[i + 2] = b;
  }

  blend(x: number, y: number, color: RGB, alpha: number): void {
    const i = (y * this.width + x) * 3;
    const d = this.data;
    d[i] = d[i]! + (color[0] - d[i]!) * alpha;
    d[i + 1] = d[i + 1]! + (color[1] - d[i + 1]!) * alpha;
    d[i + 2] = d[i + 2]! + (color[2] - d[i + 2]!) * alpha;
  }

  /** Calls `fn` for every pixel centre inside the clipped box. */
  each(x0: number, y0: number, x1: number, y1: number, fn: (px: number, py: number, x: number, y: number) => void): void {
    const xa = Math.max(0, Math.floor(x0));
    const ya = Math.max(0, Math.floor(y0));
    const xb = Math.min(this.width - 1, Math.ceil(x1));
    const yb = Math.min(this.height - 1, Math.ceil(y1));
    for (let y = ya; y <= yb; y++) for (let x = xa; x <= xb; x++) fn(x + 0.5, y + 0.5, x, y);
  }
}

export interface Light {
  dir: Vec3;
  ambient: number;
  diffuse: number;
}

export const LIGHT_VECTORS: Record<LightDirection, Vec3> = {
  left: normalize([-0.8, -0.35, 0.55]),
  right: normalize([0.8, -0.35, 0.55]),
  above: normalize([0, -0.9, 0.45]),
  front: normalize([0, -0.25, 0.95]),
};

function shade(color: RGB, normal: Vec3, light: Light, out: number[]): void {
  const lambert = Math.max(0, normal[0] * light.dir[0] + normal[1] * light.dir[1] + normal[2] * light.dir[2]);
  const k = light.ambient + light.diffuse * lambert;
  out[0] = color[0] * k;
  out[1] = color[1] * k;
  out[2] = color[2] * k;
}

const shaded = [0, 0, 0];

export function paint(canvas: Canvas, x: number, y: number, color: RGB, normal: Vec3, light: Light): void {
  shade(color, normal, light, shaded);
  canvas.set(x, y, shaded[0]!, shaded[1]!, shaded[2]!);
}

/** A capsule from a to b (pixel coordinates) of radius r, shaded as a cylinder with round ends. */
export function drawCapsule(canvas: Canvas, ax: number, ay: number, bx: number, by: number, r: number, color: RGB, light: Light): void {
  const dx = bx - ax;
  const dy = by - ay;
  const len2 = dx * dx + dy * dy;
  canvas.each(Math.min(ax, bx) - r, Math.min(ay, by) - r, Math.max(ax, bx) + r, Math.max(ay, by) + r, (px, py, x, y) => {
    const t = len2 > 0 ? Math.max(0, Math.min(1, ((px - ax) * dx + (py - ay) * dy) / len2)) : 0;
    const ox = px - (ax + t * dx);
    const oy = py - (ay + t * dy);
    const d2 = ox * ox + oy * oy;
    if (d2 > r * r) return;
    const nz = Math.sqrt(Math.max(0, 1 - d2 / (r * r)));
    paint(canvas, x, y, color, [ox / r, oy / r, nz], light);
  });
}

export function drawSphere(canvas: Canvas, cx: number, cy: number, r: number, color: RGB, light: Light): void {
  drawCapsule(canvas, cx, cy, cx, cy, r, color, light);
}

function insideConvex(points: readonly (readonly [number, number])[], px: number, py: number): boolean {
  let sign = 0;
  for (let i = 0; i < points.length; i++) {
    const [x0, y0] = points[i]!;
    const [x1, y1] = points[(i + 1) % points.length]!;
    const cross = (x1 - x0) * (py - y0) - (y1 - y0) * (px - x0);
    if (cross !== 0) {
      const s = Math.sign(cross);
      if (sign === 0) sign = s;
      else if (s !== sign) return false;
    }
  }
  return true;
}

function convexHull(points: [number, number][]): [number, number][] {
  const sorted = [...points].sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  const cross = (o: [number, number], a: [number, number], b: [number, number]) => (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0]);
  const lower: [number, number][] = [];
  for (const p of sorted) {
    while (lower.length >= 2 && cross(lower[lower.length - 2]!, lower[lower.length - 1]!, p) <= 0) lower.pop();
    lower.push(p);
  }
  const upper: [number, number][] = [];
  for (const p of sorted.reverse()) {
    while (upper.length >= 2 && cross(upper[upper.length - 2]!, upper[upper.length - 1]!, p) <= 0) upper.pop();
    upper.push(p);
  }
  return lower.slice(0, -1).concat(upper.slice(0, -1));
}

/**
 * The hull of circles (pixel coordinates), shaded as a vertical cylinder whose axis runs through
 * `axisX` with half-width `halfWidth`: used for the torso and the skirt.
 */
export function drawRoundedHull(
  canvas: Canvas,
  circles: readonly [number, number, number][],
  color: RGB,
  light: Light,
  axisX: number,
  halfWidth: number,
  colorAt?: (px: number, py: number) => RGB,
): void {
  const hull = convexHull(circles.map(([x, y]) => [x, y]));
  let x0 = Infinity;
  let y0 = Infinity;
  let x1 = -Infinity;
  let y1 = -Infinity;
  for (const [x, y, r] of circles) {
    x0 = Math.min(x0, x - r);
    y0 = Math.min(y0, y - r);
    x1 = Math.max(x1, x + r);
    y1 = Math.max(y1, y + r);
  }
  const edges: [number, number, number, number, number, number][] = [];
  for (let i = 0; i < circles.length; i++) {
    for (let j = i + 1; j < circles.length; j++) {
      const a = circles[i]!;
      const b = circles[j]!;
      edges.push([a[0], a[1], a[2], b[0], b[1], b[2]]);
    }
  }
  canvas.each(x0, y0, x1, y1, (px, py, x, y) => {
    let inside = hull.length >= 3 && insideConvex(hull, px, py);
    for (let k = 0; !inside && k < edges.length; k++) {
      const [ax, ay, ar, bx, by, br] = edges[k]!;
      const dx = bx - ax;
      const dy = by - ay;
      const len2 = dx * dx + dy * dy;
      const t = len2 > 0 ? Math.max(0, Math.min(1, ((px - ax) * dx + (py - ay) * dy) / len2)) : 0;
      const r = ar + (br - ar) * t;
      const ox = px - (ax + t * dx);
      const oy = py - (ay + t * dy);
      inside = ox * ox + oy * oy <= r * r;
    }
    if (!inside) return;
    const nx = Math.max(-1, Math.min(1, (px - axisX) / halfWidth));
    paint(canvas, x, y, colorAt ? colorAt(px, py) : color, [nx * 0.9, -0.1, Math.sqrt(Math.max(0, 1 - nx * nx * 0.81))], light);
  });
}

export function drawEllipseShadow(canvas: Canvas, cx: number, cy: number, rx: number, ry: number, strength: number): void {
  canvas.each(cx - rx, cy - ry, cx + rx, cy + ry, (px, py, x, y) => {
    const d = ((px - cx) / rx) ** 2 + ((py - cy) / ry) ** 2;
    if (d < 1) canvas.blend(x, y, [0, 0, 0], strength * (1 - d));
  });
}

export function lighten(c: RGB, k: number): RGB {
  return [c[0] + (1 - c[0]) * k, c[1] + (1 - c[1]) * k, c[2] + (1 - c[2]) * k];
}

export function darken(c: RGB, k: number): RGB {
  return [c[0] * (1 - k), c[1] * (1 - k), c[2] * (1 - k)];
}

export function mix(a: RGB, b: RGB, t: number): RGB {
  return [a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t, a[2] + (b[2] - a[2]) * t];
}
