// Where a figure goes in the frame: the body part radii, the scale fixed by the standing height
// (so one identity keeps its size across poses), the placement of the feet, and the layout in
// output pixels that tests and crops read.
import type { BodyProportions, FigureAttributes } from './attributes.js';
import { buildSkeleton, type Skeleton, type Vec3 } from './skeleton.js';

/** Where the figure landed in the output image, in output pixels: for tests and crops. */
export interface FigureLayout {
  /** Centre of the chest (between shoulders and pelvis, upper third). */
  chest: [number, number];
  head: [number, number];
  headRadius: number;
  /** Bounding box of the figure [x0, y0, x1, y1]. */
  box: [number, number, number, number];
  /** Output pixels per figure unit (standing height = 1). */
  scale: number;
}

export interface Placement {
  scale: number;
  originX: number;
  originY: number;
  box: [number, number, number, number];
}

export function radii(body: BodyProportions) {
  return {
    upperArm: 0.033 * body.build,
    forearm: 0.028 * body.build,
    hand: 0.03,
    thigh: 0.047 * body.build,
    shin: 0.038 * body.build,
    foot: 0.03,
    neck: 0.026 * body.build,
    shoulder: 0.045 * body.build,
    hipBall: 0.055 * body.build,
  };
}

export function place(skeleton: Skeleton, attrs: FigureAttributes, size: number): Placement {
  const r = radii(attrs.body);
  const points: [Vec3, number][] = [
    [skeleton.headCenter, skeleton.headRadius * 1.15],
    [skeleton.shoulder.left, r.shoulder],
    [skeleton.shoulder.right, r.shoulder],
    [skeleton.hip.left, r.hipBall],
    [skeleton.hip.right, r.hipBall],
    [skeleton.elbow.left, r.upperArm],
    [skeleton.elbow.right, r.upperArm],
    [skeleton.wrist.left, r.hand],
    [skeleton.wrist.right, r.hand],
    [skeleton.knee.left, r.thigh],
    [skeleton.knee.right, r.thigh],
    [skeleton.ankle.left, r.foot * 1.6],
    [skeleton.ankle.right, r.foot * 1.6],
  ];
  let x0 = Infinity;
  let y0 = Infinity;
  let x1 = -Infinity;
  let y1 = -Infinity;
  for (const [p, rad] of points) {
    x0 = Math.min(x0, p[0] - rad);
    x1 = Math.max(x1, p[0] + rad);
    y0 = Math.min(y0, p[1] - rad);
    y1 = Math.max(y1, p[1] + rad);
  }
  // The standing height fixes the scale, so one identity keeps its size across poses; only a pose
  // too tall or wide for the frame (arms raised) shrinks to fit.
  const standingHeight = skeleton.headRadius * 2.3 + 0.325 + 0.46 * attrs.body.legLength + 0.05;
  let scale = (attrs.body.frameHeight * size) / standingHeight;
  scale = Math.min(scale, (0.92 * size) / (y1 - y0), (0.9 * size) / (x1 - x0));
  const cx = size * (0.5 + attrs.offset.x);
  const cy = size * (0.5 + attrs.offset.y);
  // A sitting figure is shorter: keep its feet where a standing figure's would be.
  const bottom = Math.min(size * 0.985, cy + (standingHeight * scale) / 2);
  const originX = cx - ((x0 + x1) / 2) * scale;
  const originY = Math.max(bottom - y1 * scale, size * 0.04 - y0 * scale);
  return { scale, originX, originY, box: [originX + x0 * scale, originY + y0 * scale, originX + x1 * scale, originY + y1 * scale] };
}

export function figureLayout(attrs: FigureAttributes, size: number): FigureLayout {
  const skeleton = buildSkeleton(attrs);
  const p = place(skeleton, attrs, size);
  const at = (v: Vec3): [number, number] => [p.originX + v[0] * p.scale, p.originY + v[1] * p.scale];
  const shoulderMid: Vec3 = [(skeleton.shoulder.left[0] + skeleton.shoulder.right[0]) / 2, (skeleton.shoulder.left[1] + skeleton.shoulder.right[1]) / 2, 0];
  const chest: Vec3 = [shoulderMid[0] * 0.6 + skeleton.pelvis[0] * 0.4, shoulderMid[1] * 0.6 + skeleton.pelvis[1] * 0.4, 0];
  return { chest: at(chest), head: at(skeleton.headCenter), headRadius: skeleton.headRadius * p.scale, box: p.box, scale: p.scale };
}
