// The 3-D stick skeleton of a figure: joint positions from the body proportions and joint angles,
// turned by the yaw, in figure units (standing height 1, y down, z toward the viewer); and the
// small vector helpers the drawing uses on them.
import { YAW_LIMIT, type FigureAttributes } from './attributes.js';

export type Vec3 = [number, number, number];

const DEG = Math.PI / 180;

/** A unit direction from "hanging straight down", lifted sideways by `abduction` and forward by `flexion`. */
function limbDirection(side: number, abductionDeg: number, flexionDeg: number): Vec3 {
  const a = abductionDeg * DEG;
  const f = flexionDeg * DEG;
  return [side * Math.sin(a), Math.cos(a) * Math.cos(f), Math.cos(a) * Math.sin(f)];
}

export function normalize(v: Vec3): Vec3 {
  const n = Math.hypot(v[0], v[1], v[2]) || 1;
  return [v[0] / n, v[1] / n, v[2] / n];
}

export function add(a: Vec3, b: Vec3, s = 1): Vec3 {
  return [a[0] + b[0] * s, a[1] + b[1] * s, a[2] + b[2] * s];
}

/** Rotates `dir` by `angle` toward `target` (in the plane the two span). */
function bendToward(dir: Vec3, target: Vec3, angleDeg: number): Vec3 {
  const d = dir[0] * target[0] + dir[1] * target[1] + dir[2] * target[2];
  let perp: Vec3 = [target[0] - d * dir[0], target[1] - d * dir[1], target[2] - d * dir[2]];
  if (Math.hypot(...perp) < 1e-6) perp = [0, 0, 1];
  perp = normalize(perp);
  const c = Math.cos(angleDeg * DEG);
  const s = Math.sin(angleDeg * DEG);
  return [dir[0] * c + perp[0] * s, dir[1] * c + perp[1] * s, dir[2] * c + perp[2] * s];
}

/** Figure-space joints, y down, z toward the viewer, lengths in units of standing height. */
export interface Skeleton {
  headCenter: Vec3;
  headRadius: number;
  neck: Vec3;
  pelvis: Vec3;
  shoulder: { left: Vec3; right: Vec3 };
  elbow: { left: Vec3; right: Vec3 };
  wrist: { left: Vec3; right: Vec3 };
  hip: { left: Vec3; right: Vec3 };
  knee: { left: Vec3; right: Vec3 };
  ankle: { left: Vec3; right: Vec3 };
  /** The direction the body faces (unit, after yaw). */
  facing: Vec3;
}

export function buildSkeleton(attrs: FigureAttributes): Skeleton {
  const { body, joints } = attrs;
  const yaw = Math.max(-YAW_LIMIT, Math.min(YAW_LIMIT, joints.yaw)) * DEG;
  const turn = (p: Vec3): Vec3 => [p[0] * Math.cos(yaw) + p[2] * Math.sin(yaw), p[1], -p[0] * Math.sin(yaw) + p[2] * Math.cos(yaw)];
  const torsoLength = 0.3;
  const headRadius = 0.072 * body.headSize;
  const shoulderHalf = 0.1 * body.build;
  const hipHalf = 0.058 * body.build;
  const upperArm = 0.155;
  const forearm = 0.145;
  const thigh = 0.235 * body.legLength;
  const shin = 0.225 * body.legLength;
  const pelvis: Vec3 = [0, 0, 0];
  const neck: Vec3 = [0, -torsoLength, 0];
  const headCenter: Vec3 = [0, -torsoLength - 0.025 - headRadius, 0];
  const sideOf = (name: 'left' | 'right') => (name === 'left' ? 1 : -1);
  const arm = (name: 'left' | 'right') => {
    const side = sideOf(name);
    const angles = joints[name];
    const shoulder: Vec3 = [side * shoulderHalf, -torsoLength + 0.03, 0];
    const upper = limbDirection(side, angles.shoulderAbduction, angles.shoulderFlexion);
    const elbow = add(shoulder, upper, upperArm);
    // The elbow folds the forearm up and forward, the way a real elbow bends.
    const lower = bendToward(upper, normalize([0, -2, 1]), angles.elbowFlexion);
    return { shoulder, elbow, wrist: add(elbow, lower, forearm) };
  };
  const leg = (name: 'left' | 'right') => {
    const side = sideOf(name);
    const angles = joints[name];
    const hip: Vec3 = [side * hipHalf, 0, 0];
    const knee = add(hip, limbDirection(side, angles.hipAbduction, angles.hipFlexion), thigh);
    const ankle = add(knee, limbDirection(side, angles.hipAbduction, angles.hipFlexion - angles.kneeFlexion), shin);
    return { hip, knee, ankle };
  };
  const l = arm('left');
  const r = arm('right');
  const ll = leg('left');
  const rl = leg('right');
  return {
    headCenter: turn(headCenter),
    headRadius,
    neck: turn(neck),
    pelvis: turn(pelvis),
    shoulder: { left: turn(l.shoulder), right: turn(r.shoulder) },
    elbow: { left: turn(l.elbow), right: turn(r.elbow) },
    wrist: { left: turn(l.wrist), right: turn(r.wrist) },
    hip: { left: turn(ll.hip), right: turn(rl.hip) },
    knee: { left: turn(ll.knee), right: turn(rl.knee) },
    ankle: { left: turn(ll.ankle), right: turn(rl.ankle) },
    facing: turn([0, 0, 1]),
  };
}
