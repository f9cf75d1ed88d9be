// The embedded default data: a procedural generator of small people, pure TypeScript and
// deterministic by seed, so the library can train and be tested with no image files at all.
//
// A figure is a 3-D stick skeleton (pelvis, spine, shoulders, hips, elbows, knees) whose joint
// angles stay within anatomical limits, turned about the vertical axis (yaw) and projected
// orthographically; limbs are capsules, the torso a rounded quad, the head a sphere, all shaded
// toward one light direction. It is drawn at `supersample` x the target size and box-filtered
// down, so edges are smooth at 32x32 and 64x64. Every visible attribute has a named value from
// a small palette, so captions use the words that describe the pixels.
import type { Dataset, Example } from './dataset.js';
import { seededRandom } from '../host_random.js';

type RGB = readonly [number, number, number];

export const SKIN_TONES = {
  pale: [0.97, 0.85, 0.77],
  light: [0.93, 0.74, 0.6],
  tan: [0.8, 0.58, 0.42],
  brown: [0.58, 0.38, 0.24],
  dark: [0.34, 0.21, 0.13],
} as const satisfies Record<string, RGB>;

export const HAIR_COLORS = {
  black: [0.07, 0.06, 0.06],
  brown: [0.38, 0.22, 0.11],
  blonde: [0.93, 0.8, 0.42],
  red: [0.75, 0.27, 0.1],
  grey: [0.66, 0.66, 0.66],
} as const satisfies Record<string, RGB>;

export const SHIRT_COLORS = {
  red: [0.86, 0.11, 0.11],
  blue: [0.14, 0.3, 0.88],
  green: [0.13, 0.66, 0.22],
  yellow: [0.97, 0.86, 0.12],
  white: [0.96, 0.96, 0.95],
  black: [0.09, 0.09, 0.1],
  purple: [0.56, 0.2, 0.72],
  orange: [0.99, 0.55, 0.08],
} as const satisfies Record<string, RGB>;

export const TROUSER_COLORS = {
  blue: [0.16, 0.27, 0.62],
  black: [0.09, 0.09, 0.11],
  grey: [0.5, 0.5, 0.53],
  brown: [0.46, 0.3, 0.17],
  white: [0.93, 0.93, 0.9],
  red: [0.76, 0.14, 0.14],
  green: [0.18, 0.45, 0.22],
} as const satisfies Record<string, RGB>;

export const BACKGROUND_COLORS = {
  green: [0.36, 0.66, 0.26],
  olive: [0.5, 0.54, 0.24],
  yellow: [0.88, 0.8, 0.42],
  beige: [0.87, 0.8, 0.67],
  grey: [0.64, 0.65, 0.67],
  blue: [0.52, 0.67, 0.88],
  pink: [0.93, 0.71, 0.76],
  white: [0.94, 0.94, 0.92],
  teal: [0.28, 0.6, 0.6],
} as const satisfies Record<string, RGB>;

export type SkinTone = keyof typeof SKIN_TONES;
export type HairColor = keyof typeof HAIR_COLORS;
export type ShirtColor = keyof typeof SHIRT_COLORS;
export type TrouserColor = keyof typeof TROUSER_COLORS;
export type BackgroundColor = keyof typeof BACKGROUND_COLORS;
export type HairStyle = 'short' | 'long' | 'bald' | 'ponytail';
export type LowerWear = 'trousers' | 'skirt' | 'shorts';
export type Pose = 'standing' | 'walking' | 'arms raised' | 'sitting' | 'waving' | 'running';
/** park: sky over grass (the colour names the grass); wall: an indoor wall over a floor; plain: a gradient. */
export type BackgroundKind = 'park' | 'wall' | 'plain';
export type LightDirection = 'left' | 'right' | 'above' | 'front';
/** Traits no caption word names: they tell two people with the same caption apart. */
export type ShirtPattern = 'plain' | 'stripes' | 'dots' | 'chest mark';
export type Accessory = 'none' | 'scarf' | 'belt' | 'bag';

export const HAIR_STYLES: readonly HairStyle[] = ['short', 'long', 'bald', 'ponytail'];
export const LOWER_WEARS: readonly LowerWear[] = ['trousers', 'skirt', 'shorts'];
export const POSES: readonly Pose[] = ['standing', 'walking', 'arms raised', 'sitting', 'waving', 'running'];
export const BACKGROUND_KINDS: readonly BackgroundKind[] = ['park', 'wall', 'plain'];
export const LIGHT_DIRECTIONS: readonly LightDirection[] = ['left', 'right', 'above', 'front'];
export const SHIRT_PATTERNS: readonly ShirtPattern[] = ['plain', 'stripes', 'dots', 'chest mark'];
export const ACCESSORIES: readonly Accessory[] = ['none', 'scarf', 'belt', 'bag'];
/** The colours each background kind is drawn in (a blue park would not read as a park). */
export const BACKGROUND_COLORS_BY_KIND: Readonly<Record<BackgroundKind, readonly BackgroundColor[]>> = {
  park: ['green', 'olive', 'yellow'],
  wall: ['beige', 'grey', 'blue', 'pink', 'white'],
  plain: ['blue', 'grey', 'teal', 'pink', 'yellow', 'white'],
};

/** Body proportions, each a factor around 1. */
export interface BodyProportions {
  /** Girth of torso and limbs. */
  build: number;
  headSize: number;
  legLength: number;
  /** Height of the standing figure as a fraction of the frame height. */
  frameHeight: number;
}

/** One side's joint angles in degrees. Abduction lifts a limb sideways, flexion forward. */
export interface LimbAngles {
  shoulderAbduction: number;
  shoulderFlexion: number;
  elbowFlexion: number;
  hipAbduction: number;
  hipFlexion: number;
  kneeFlexion: number;
}

export interface JointAngles {
  /** Turn of the whole body about the vertical axis, degrees; 0 faces the viewer, +90 faces image-right. */
  yaw: number;
  left: LimbAngles;
  right: LimbAngles;
}

/** Anatomical ranges [min, max] in degrees that every sampled pose respects. */
export const JOINT_LIMITS: Readonly<Record<keyof LimbAngles, readonly [number, number]>> = {
  shoulderAbduction: [-10, 180],
  shoulderFlexion: [-60, 180],
  elbowFlexion: [0, 150],
  hipAbduction: [-15, 45],
  hipFlexion: [-30, 120],
  kneeFlexion: [0, 140],
};
export const YAW_LIMIT = 90;

/**
 * What makes a person the same person across images. The named attributes appear in captions;
 * the unnamed traits (body proportions, the shirt's pattern and the accessory, each pattern and
 * accessory colour drawn from a continuous range) do not, so no prompt can describe a person
 * completely: that is what personalisation has to learn from images.
 */
export interface IdentityAttributes {
  skinTone: SkinTone;
  hairColor: HairColor;
  hairStyle: HairStyle;
  shirtColor: ShirtColor;
  trouserColor: TrouserColor;
  lowerWear: LowerWear;
  body: BodyProportions;
  shirtPattern: ShirtPattern;
  /** Colour of the stripes, dots or chest mark (RGB in [0, 1]). */
  patternColor: RGB;
  accessory: Accessory;
  accessoryColor: RGB;
}

export interface FigureAttributes extends IdentityAttributes {
  pose: Pose;
  joints: JointAngles;
  background: BackgroundKind;
  backgroundColor: BackgroundColor;
  lightDir: LightDirection;
  /** Offset of the figure's centre from the frame centre, as fractions of the frame. */
  offset: { x: number; y: number };
  /** Seed of the small details: texture noise, background scenery. */
  detailSeed: number;
}

// ---------------------------------------------------------------------------------------------
// Sampling

/** A 32-bit hash of integers, to derive independent streams from one seed. */
export function mixSeed(...parts: number[]): number {
  let h = 0x811c9dc5;
  for (const p of parts) {
    h = Math.imul(h ^ (p >>> 0), 0x01000193);
    h ^= h >>> 15;
    h = Math.imul(h, 0x2c1b3c6d);
    h ^= h >>> 12;
  }
  return h >>> 0;
}

function pick<T>(random: () => number, items: readonly T[]): T {
  return items[Math.floor(random() * items.length)]!;
}

function uniform(random: () => number, lo: number, hi: number): number {
  return lo + (hi - lo) * random();
}

const IDENTITY_STREAM = 1;
const SCENE_STREAM = 2;

/** A saturated colour from the continuous HSV range (hue anywhere, saturation 0.55-0.95, value 0.45-0.95). */
function sampleTraitColor(random: () => number): RGB {
  const h = random() * 6;
  const s = uniform(random, 0.55, 0.95);
  const v = uniform(random, 0.45, 0.95);
  const f = h - Math.floor(h);
  const p = v * (1 - s);
  const q = v * (1 - s * f);
  const u = v * (1 - s * (1 - f));
  const sector: RGB[] = [[v, u, p], [q, v, p], [p, v, u], [p, q, v], [u, p, v], [v, p, q]];
  return sector[Math.floor(h) % 6]!;
}

export function sampleIdentity(seed: number): IdentityAttributes {
  const random = seededRandom(mixSeed(seed, IDENTITY_STREAM));
  const named = {
    skinTone: pick(random, Object.keys(SKIN_TONES) as SkinTone[]),
    hairColor: pick(random, Object.keys(HAIR_COLORS) as HairColor[]),
    hairStyle: pick(random, HAIR_STYLES),
    shirtColor: pick(random, Object.keys(SHIRT_COLORS) as ShirtColor[]),
    trouserColor: pick(random, Object.keys(TROUSER_COLORS) as TrouserColor[]),
    lowerWear: pick(random, LOWER_WEARS),
    body: {
      build: uniform(random, 0.85, 1.2),
      headSize: uniform(random, 0.92, 1.1),
      legLength: uniform(random, 0.92, 1.08),
      frameHeight: uniform(random, 0.72, 0.84),
    },
  };
  // Drawn after the named attributes, so those stay what they were for every seed.
  return {
    ...named,
    shirtPattern: pick(random, SHIRT_PATTERNS),
    patternColor: sampleTraitColor(random),
    accessory: pick(random, ACCESSORIES),
    accessoryColor: sampleTraitColor(random),
  };
}

export function identityOf(attrs: FigureAttributes): IdentityAttributes {
  const { skinTone, hairColor, hairStyle, shirtColor, trouserColor, lowerWear, body, shirtPattern, patternColor, accessory, accessoryColor } = attrs;
  return { skinTone, hairColor, hairStyle, shirtColor, trouserColor, lowerWear, body: { ...body }, shirtPattern, patternColor, accessory, accessoryColor };
}

function limb(random: () => number, ranges: { [K in keyof LimbAngles]: readonly [number, number] }): LimbAngles {
  const out = {} as LimbAngles;
  for (const key of Object.keys(JOINT_LIMITS) as (keyof LimbAngles)[]) {
    const [lo, hi] = ranges[key];
    const [min, max] = JOINT_LIMITS[key];
    out[key] = Math.min(max, Math.max(min, uniform(random, lo, hi)));
  }
  return out;
}

type Ranges = { [K in keyof LimbAngles]: readonly [number, number] };
const restingArms = { shoulderAbduction: [4, 16], shoulderFlexion: [-10, 12], elbowFlexion: [2, 22] } as const;
const standingLegs = { hipAbduction: [2, 9], hipFlexion: [-4, 6], kneeFlexion: [0, 8] } as const;

function samplePose(random: () => number, pose: Pose): JointAngles {
  const side = random() < 0.5 ? 1 : -1;
  const profileYaw = () => side * uniform(random, 55, 80);
  switch (pose) {
    case 'standing': {
      const ranges: Ranges = { ...restingArms, ...standingLegs };
      return { yaw: uniform(random, -25, 25), left: limb(random, ranges), right: limb(random, ranges) };
    }
    case 'walking':
    case 'running': {
      const running = pose === 'running';
      const forward: Ranges = running
        ? { shoulderAbduction: [4, 12], shoulderFlexion: [-50, -25], elbowFlexion: [75, 110], hipAbduction: [0, 5], hipFlexion: [35, 55], kneeFlexion: [40, 70] }
        : { shoulderAbduction: [3, 10], shoulderFlexion: [-30, -15], elbowFlexion: [8, 30], hipAbduction: [0, 5], hipFlexion: [18, 32], kneeFlexion: [4, 18] };
      const back: Ranges = running
        ? { shoulderAbduction: [4, 12], shoulderFlexion: [40, 70], elbowFlexion: [70, 100], hipAbduction: [0, 5], hipFlexion: [-25, -12], kneeFlexion: [45, 80] }
        : { shoulderAbduction: [3, 10], shoulderFlexion: [15, 30], elbowFlexion: [10, 30], hipAbduction: [0, 5], hipFlexion: [-22, -10], kneeFlexion: [15, 35] };
      // The arm swings opposite to the leg of its side: mix the two range sets per limb.
      const a = limb(random, back);
      const b = limb(random, forward);
      const leftLegForward = random() < 0.5;
      const [legL, legR] = leftLegForward ? [b, a] : [a, b];
      const [armL, armR] = leftLegForward ? [a, b] : [b, a];
      const merge = (arm: LimbAngles, leg: LimbAngles): LimbAngles => ({
        shoulderAbduction: arm.shoulderAbduction,
        shoulderFlexion: arm.shoulderFlexion,
        elbowFlexion: arm.elbowFlexion,
        hipAbduction: leg.hipAbduction,
        hipFlexion: leg.hipFlexion,
        kneeFlexion: leg.kneeFlexion,
      });
      return { yaw: profileYaw(), left: merge(armL, legL), right: merge(armR, legR) };
    }
    case 'arms raised': {
      const ranges: Ranges = { shoulderAbduction: [135, 172], shoulderFlexion: [-5, 20], elbowFlexion: [0, 25], hipAbduction: [4, 14], hipFlexion: [-4, 6], kneeFlexion: [0, 8] };
      return { yaw: uniform(random, -20, 20), left: limb(random, ranges), right: limb(random, ranges) };
    }
    case 'sitting': {
      const ranges: Ranges = { shoulderAbduction: [6, 16], shoulderFlexion: [5, 20], elbowFlexion: [40, 65], hipAbduction: [4, 14], hipFlexion: [82, 96], kneeFlexion: [80, 98] };
      return { yaw: uniform(random, -50, 50), left: limb(random, ranges), right: limb(random, ranges) };
    }
    case 'waving': {
      const rest: Ranges = { ...restingArms, ...standingLegs };
      const wave: Ranges = { shoulderAbduction: [85, 125], shoulderFlexion: [-5, 15], elbowFlexion: [75, 120], ...standingLegs };
      const a = limb(random, rest);
      const b = limb(random, wave);
      return side > 0 ? { yaw: uniform(random, -20, 20), left: b, right: a } : { yaw: uniform(random, -20, 20), left: a, right: b };
    }
  }
}

export interface SampleFigureOptions {
  /** Identity attributes held fixed; the rest (pose, background, light) still vary with the seed. */
  fixed?: Partial<IdentityAttributes>;
  pose?: Pose;
}

export function sampleFigureAttributes(seed: number, options: SampleFigureOptions = {}): FigureAttributes {
  const identity = { ...sampleIdentity(seed), ...options.fixed };
  const random = seededRandom(mixSeed(seed, SCENE_STREAM));
  const sampledPose = pick(random, POSES);
  const pose = options.pose ?? sampledPose;
  const joints = samplePose(random, pose);
  const background = pick(random, BACKGROUND_KINDS);
  const backgroundColor = pick(random, BACKGROUND_COLORS_BY_KIND[background]);
  const lightDir = pick(random, LIGHT_DIRECTIONS);
  const offset = { x: uniform(random, -0.05, 0.05), y: uniform(random, -0.03, 0.03) };
  const detailSeed = Math.floor(random() * 0x100000000);
  return { ...identity, body: { ...identity.body }, pose, joints, background, backgroundColor, lightDir, offset, detailSeed };
}

// ---------------------------------------------------------------------------------------------
// Captions

const POSE_PHRASES: Record<Pose, string> = {
  standing: 'standing',
  walking: 'walking',
  'arms raised': 'with arms raised',
  sitting: 'sitting',
  waving: 'waving',
  running: 'running',
};

const LIGHT_PHRASES: Record<LightDirection, string> = {
  left: 'lit from the left',
  right: 'lit from the right',
  above: 'lit from above',
  front: 'lit from the front',
};

function article(word: string): string {
  return /^[aeiou]/.test(word) ? 'an' : 'a';
}

export function backgroundPhrase(kind: BackgroundKind, color: BackgroundColor): string {
  switch (kind) {
    case 'park':
      return `in front of ${article(color)} ${color} park`;
    case 'wall':
      return `in front of ${article(color)} ${color} wall`;
    case 'plain':
      return `on a plain ${color} background`;
  }
}

/** The person's description without pose or scene, e.g. "a person with tan skin and long red hair wearing a blue shirt and a black skirt". */
export function identityCaption(identity: IdentityAttributes): string {
  const hair =
    identity.hairStyle === 'bald' ? '' : identity.hairStyle === 'ponytail' ? ` and ${identity.hairColor} hair in a ponytail` : ` and ${identity.hairStyle} ${identity.hairColor} hair`;
  const subject = identity.hairStyle === 'bald' ? 'a bald person' : 'a person';
  const lower =
    identity.lowerWear === 'skirt' ? `${article(identity.trouserColor)} ${identity.trouserColor} skirt` : `${identity.trouserColor} ${identity.lowerWear}`;
  return `${subject} with ${identity.skinTone} skin${hair} wearing ${article(identity.shirtColor)} ${identity.shirtColor} shirt and ${lower}`;
}

export function captionFor(attrs: FigureAttributes): string {
  return `${identityCaption(attrs)}, ${POSE_PHRASES[attrs.pose]}, ${backgroundPhrase(attrs.background, attrs.backgroundColor)}, ${LIGHT_PHRASES[attrs.lightDir]}`;
}

// ---------------------------------------------------------------------------------------------
// Skeleton

type Vec3 = [number, number, number];

const DEG = Math.PI / 180;

/** A unit direction from "hanging straight down", lifted sideways by `abduction` and forward by `flexion`. */
function limbDirection(side: number, abductionDeg: number, flexionDeg: number): Vec3 {
  const a = abductionDeg * DEG;
  const f = flexionDeg * DEG;
  return [side * Math.sin(a), Math.cos(a) * Math.cos(f), Math.cos(a) * Math.sin(f)];
}

function normalize(v: Vec3): Vec3 {
  const n = Math.hypot(v[0], v[1], v[2]) || 1;
  return [v[0] / n, v[1] / n, v[2] / n];
}

function add(a: Vec3, b: Vec3, s = 1): Vec3 {
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

// ---------------------------------------------------------------------------------------------
// Drawing primitives on a supersampled RGB canvas

class Canvas {
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

interface Light {
  dir: Vec3;
  ambient: number;
  diffuse: number;
}

const LIGHT_VECTORS: Record<LightDirection, Vec3> = {
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

function paint(canvas: Canvas, x: number, y: number, color: RGB, normal: Vec3, light: Light): void {
  shade(color, normal, light, shaded);
  canvas.set(x, y, shaded[0]!, shaded[1]!, shaded[2]!);
}

/** A capsule from a to b (pixel coordinates) of radius r, shaded as a cylinder with round ends. */
function drawCapsule(canvas: Canvas, ax: number, ay: number, bx: number, by: number, r: number, color: RGB, light: Light): void {
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

function drawSphere(canvas: Canvas, cx: number, cy: number, r: number, color: RGB, light: Light): void {
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
function drawRoundedHull(
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

function drawEllipseShadow(canvas: Canvas, cx: number, cy: number, rx: number, ry: number, strength: number): void {
  canvas.each(cx - rx, cy - ry, cx + rx, cy + ry, (px, py, x, y) => {
    const d = ((px - cx) / rx) ** 2 + ((py - cy) / ry) ** 2;
    if (d < 1) canvas.blend(x, y, [0, 0, 0], strength * (1 - d));
  });
}

/**
 * The shirt's colour at a pixel of the torso: its pattern over the named colour. `top`/`bottom`
 * bound the torso vertically, `chest` is the badge centre (pixels).
 */
function shirtColorAt(
  attrs: IdentityAttributes,
  shirt: RGB,
  top: number,
  bottom: number,
  axisX: number,
  halfWidth: number,
  chest: readonly [number, number],
): ((px: number, py: number) => RGB) | undefined {
  const mark = attrs.patternColor;
  switch (attrs.shirtPattern) {
    case 'plain':
      return undefined;
    case 'stripes': {
      const band = (bottom - top) / 6;
      return (_px, py) => (Math.floor((py - top) / band) % 2 === 1 ? mark : shirt);
    }
    case 'dots': {
      const cell = halfWidth * 0.75;
      return (px, py) => {
        const u = (px - axisX) / cell + 0.5;
        const v = (py - top) / cell;
        const du = u - Math.floor(u) - 0.5;
        const dv = v - Math.floor(v) - 0.5;
        return du * du + dv * dv < 0.09 ? mark : shirt;
      };
    }
    case 'chest mark': {
      const r2 = (halfWidth * 0.42) ** 2;
      return (px, py) => ((px - chest[0]) ** 2 + (py - chest[1]) ** 2 < r2 ? mark : shirt);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Backgrounds

function lighten(c: RGB, k: number): RGB {
  return [c[0] + (1 - c[0]) * k, c[1] + (1 - c[1]) * k, c[2] + (1 - c[2]) * k];
}

function darken(c: RGB, k: number): RGB {
  return [c[0] * (1 - k), c[1] * (1 - k), c[2] * (1 - k)];
}

function mix(a: RGB, b: RGB, t: number): RGB {
  return [a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t, a[2] + (b[2] - a[2]) * t];
}

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

/** Fills the canvas; returns the y (pixels) of the ground line the figure stands on, or null. */
function drawBackground(canvas: Canvas, attrs: FigureAttributes, random: () => number, groundY: number): void {
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

// ---------------------------------------------------------------------------------------------
// The figure

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

interface Placement {
  scale: number;
  originX: number;
  originY: number;
  box: [number, number, number, number];
}

const SHOE: RGB = [0.12, 0.1, 0.09];
const STOOL: RGB = [0.45, 0.3, 0.18];

function radii(body: BodyProportions) {
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

function place(skeleton: Skeleton, attrs: FigureAttributes, size: number): Placement {
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

interface DrawItem {
  depth: number;
  draw: () => void;
}

export interface RenderOptions {
  /** Overrides `attrs.detailSeed` (texture noise and scenery). */
  seed?: number;
  /** Supersampling factor per axis (default 4). */
  supersample?: number;
  /** Amplitude of the per-pixel texture noise in [0, 1] units (default 0.02). */
  noise?: number;
}

/** Renders a figure: RGB, CHW, values in [-1, 1], length 3 * size * size. */
export function renderFigure(attrs: FigureAttributes, size: number, options: RenderOptions = {}): Float32Array {
  if (!Number.isInteger(size) || size < 8) throw new RangeError(`renderFigure: size must be an integer >= 8, got ${size}`);
  const ss = options.supersample ?? 4;
  if (!Number.isInteger(ss) || ss < 1) throw new RangeError(`renderFigure: supersample must be an integer >= 1, got ${ss}`);
  const S = size * ss;
  const random = seededRandom(options.seed ?? attrs.detailSeed);
  const canvas = new Canvas(S, S);
  const skeleton = buildSkeleton(attrs);
  const placement = place(skeleton, attrs, S);
  const { scale, originX, originY } = placement;
  const px = (v: Vec3) => originX + v[0] * scale;
  const py = (v: Vec3) => originY + v[1] * scale;
  const groundY = placement.box[3];
  drawBackground(canvas, attrs, random, groundY);

  const light: Light = { dir: LIGHT_VECTORS[attrs.lightDir], ambient: 0.5, diffuse: 0.62 };
  const r = radii(attrs.body);
  const skin = SKIN_TONES[attrs.skinTone];
  const hair = HAIR_COLORS[attrs.hairColor];
  const shirt = SHIRT_COLORS[attrs.shirtColor];
  const lower = TROUSER_COLORS[attrs.trouserColor];
  const items: DrawItem[] = [];
  const capsule = (a: Vec3, b: Vec3, rad: number, color: RGB, bias = 0) =>
    items.push({ depth: (a[2] + b[2]) / 2 + bias, draw: () => drawCapsule(canvas, px(a), py(a), px(b), py(b), rad * scale, color, light) });

  // Shadow on the ground, pushed away from the light.
  const lightDir = LIGHT_VECTORS[attrs.lightDir];
  const footMid = (skeleton.ankle.left[0] + skeleton.ankle.right[0]) / 2;
  drawEllipseShadow(canvas, originX + footMid * scale - lightDir[0] * 0.12 * scale, groundY - 0.01 * scale, 0.22 * scale, 0.045 * scale, 0.35);

  if (attrs.pose === 'sitting') {
    const seatY = (skeleton.hip.left[1] + skeleton.hip.right[1]) / 2 + r.thigh;
    const hx = (skeleton.hip.left[0] + skeleton.hip.right[0]) / 2;
    const half = 0.15;
    items.push({
      depth: -1,
      draw: () => {
        const x0 = originX + (hx - half) * scale;
        const x1 = originX + (hx + half) * scale;
        const top = originY + seatY * scale;
        canvas.each(x0, top, x1, top + 0.04 * scale, (_x, _y, x, y) => canvas.set(x, y, ...lighten(STOOL, 0.15)));
        for (const legX of [x0 + 0.02 * scale, x1 - 0.02 * scale]) {
          canvas.each(legX - 0.018 * scale, top, legX + 0.018 * scale, groundY, (_x, _y, x, y) => canvas.set(x, y, ...STOOL));
        }
      },
    });
  }

  const legColor = { thigh: attrs.lowerWear === 'trousers' ? lower : attrs.lowerWear === 'shorts' ? lower : skin, shin: attrs.lowerWear === 'trousers' ? lower : skin };
  for (const side of ['left', 'right'] as const) {
    const hip = skeleton.hip[side];
    const knee = skeleton.knee[side];
    const ankle = skeleton.ankle[side];
    if (attrs.lowerWear === 'shorts') {
      const mid = add(hip, [knee[0] - hip[0], knee[1] - hip[1], knee[2] - hip[2]], 0.6);
      capsule(knee, ankle, r.shin, skin);
      capsule(mid, knee, r.shin * 1.05, skin);
      capsule(hip, mid, r.thigh * 1.05, lower, 0.001);
    } else {
      capsule(hip, knee, r.thigh, legColor.thigh);
      capsule(knee, ankle, r.shin, legColor.shin);
    }
    const toe = add(ankle, normalize([skeleton.facing[0], 0.15, skeleton.facing[2]]), 0.06);
    capsule(ankle, toe, r.foot, SHOE, 0.002);
  }

  const shoulderMid: Vec3 = [(skeleton.shoulder.left[0] + skeleton.shoulder.right[0]) / 2, (skeleton.shoulder.left[1] + skeleton.shoulder.right[1]) / 2, 0];
  const torsoAxis = originX + shoulderMid[0] * scale;
  const torsoHalf = Math.max(Math.abs(skeleton.shoulder.left[0] - skeleton.shoulder.right[0]) / 2 + r.shoulder, 0.06) * scale;
  const torsoCircles = (): [number, number, number][] => [
    [px(skeleton.shoulder.left), py(skeleton.shoulder.left), r.shoulder * scale],
    [px(skeleton.shoulder.right), py(skeleton.shoulder.right), r.shoulder * scale],
    [px(skeleton.hip.left), py(skeleton.hip.left) - 0.02 * scale, r.hipBall * scale],
    [px(skeleton.hip.right), py(skeleton.hip.right) - 0.02 * scale, r.hipBall * scale],
  ];
  const torsoTop = Math.min(py(skeleton.shoulder.left), py(skeleton.shoulder.right)) - r.shoulder * scale;
  const torsoBottom = Math.max(py(skeleton.hip.left), py(skeleton.hip.right));
  const chest: [number, number] = [torsoAxis, py(shoulderMid) * 0.6 + py(skeleton.pelvis) * 0.4];
  const shirtAt = shirtColorAt(attrs, shirt, torsoTop, torsoBottom, torsoAxis, torsoHalf, chest);
  items.push({ depth: 0, draw: () => drawRoundedHull(canvas, torsoCircles(), shirt, light, torsoAxis, torsoHalf, shirtAt) });
  const drawing: FigureDrawing = { items, canvas, skeleton, attrs, light, px, py, scale };
  drawAccessory(drawing, r);
  if (attrs.lowerWear !== 'skirt') {
    // Waistband and hips in the trouser colour, so the shirt ends above the legs.
    items.push({
      depth: 0.0005,
      draw: () => {
        const hips: [number, number, number][] = [
          [px(skeleton.hip.left), py(skeleton.hip.left) + 0.005 * scale, r.hipBall * scale],
          [px(skeleton.hip.right), py(skeleton.hip.right) + 0.005 * scale, r.hipBall * scale],
          [px(skeleton.hip.left), py(skeleton.hip.left) - 0.035 * scale, r.hipBall * 0.9 * scale],
          [px(skeleton.hip.right), py(skeleton.hip.right) - 0.035 * scale, r.hipBall * 0.9 * scale],
        ];
        drawRoundedHull(canvas, hips, lower, light, torsoAxis, torsoHalf);
      },
    });
  } else {
    items.push({
      depth: 0.06,
      draw: () => {
        const flare = 0.075 * attrs.body.build;
        const hipL = skeleton.hip.left;
        const hipR = skeleton.hip.right;
        const hemY = Math.max(hipL[1], hipR[1]) + 0.2;
        const facingX = Math.abs(skeleton.facing[2]);
        const halfHem = (Math.abs(hipL[0] - hipR[0]) / 2 + flare * (0.5 + 0.5 * facingX)) * scale;
        const mid = (hipL[0] + hipR[0]) / 2;
        const circles: [number, number, number][] = [
          [px(hipL), py(hipL) - 0.035 * scale, r.hipBall * 0.9 * scale],
          [px(hipR), py(hipR) - 0.035 * scale, r.hipBall * 0.9 * scale],
          [originX + mid * scale - halfHem, originY + hemY * scale, 0.02 * scale],
          [originX + mid * scale + halfHem, originY + hemY * scale, 0.02 * scale],
        ];
        drawRoundedHull(canvas, circles, lower, light, torsoAxis, torsoHalf + flare * scale);
      },
    });
  }

  for (const side of ['left', 'right'] as const) {
    const shoulder = skeleton.shoulder[side];
    const elbow = skeleton.elbow[side];
    const wrist = skeleton.wrist[side];
    const sleeveEnd = add(shoulder, [elbow[0] - shoulder[0], elbow[1] - shoulder[1], elbow[2] - shoulder[2]], 0.75);
    // Arms sit slightly in front of the torso when they are at its side, so the bias nudges ties.
    capsule(elbow, wrist, r.forearm, skin, 0.01);
    capsule(sleeveEnd, elbow, r.forearm * 1.05, skin, 0.01);
    capsule(shoulder, sleeveEnd, r.upperArm, shirt, 0.012);
    const hand = add(wrist, normalize([wrist[0] - elbow[0], wrist[1] - elbow[1], wrist[2] - elbow[2]]), 0.012);
    items.push({ depth: hand[2] + 0.011, draw: () => drawSphere(canvas, px(hand), py(hand), r.hand * scale, skin, light) });
  }

  drawHead(drawing, r.neck, skin, hair);

  items.sort((a, b) => a.depth - b.depth);
  for (const item of items) item.draw();
  return downsample(canvas, size, ss, random, options.noise ?? 0.02);
}

/** What the parts of one figure are drawn with: the depth-sorted items, the canvas, the pose and the projection. */
interface FigureDrawing {
  items: DrawItem[];
  canvas: Canvas;
  skeleton: Skeleton;
  attrs: FigureAttributes;
  light: Light;
  px: (v: Vec3) => number;
  py: (v: Vec3) => number;
  scale: number;
}

/** The accessory, as depth-sorted items: a scarf at the neck, a belt at the waist, a bag at one hip on a strap. */
function drawAccessory({ items, canvas, skeleton, attrs, light, px, py, scale }: FigureDrawing, r: ReturnType<typeof radii>): void {
  const color = attrs.accessoryColor;
  const capsule = (a: Vec3, b: Vec3, rad: number, depth: number) =>
    items.push({ depth, draw: () => drawCapsule(canvas, px(a), py(a), px(b), py(b), rad * scale, color, light) });
  const { shoulder, hip, neck } = skeleton;
  switch (attrs.accessory) {
    case 'none':
      return;
    case 'scarf': {
      const collar = (p: Vec3): Vec3 => [neck[0] * 0.4 + p[0] * 0.6, neck[1] + 0.025, 0.02];
      capsule(collar(shoulder.left), collar(shoulder.right), r.neck * 1.25, 0.025);
      const tailSide = attrs.joints.yaw >= 0 ? shoulder.right : shoulder.left;
      const tailTop = collar(tailSide);
      capsule(tailTop, [tailTop[0], tailTop[1] + 0.11, 0.02], r.neck * 0.8, 0.025);
      return;
    }
    case 'belt': {
      const waist = (p: Vec3): Vec3 => [p[0] * 1.25, p[1] - 0.03, 0.01];
      capsule(waist(hip.left), waist(hip.right), 0.02 * attrs.body.build, attrs.lowerWear === 'skirt' ? 0.061 : 0.0008);
      return;
    }
    case 'bag': {
      const side = attrs.joints.yaw >= 0 ? -1 : 1;
      const strapTop = side > 0 ? shoulder.right : shoulder.left;
      const bagHip = side > 0 ? hip.left : hip.right;
      const bag: Vec3 = [bagHip[0] + side * 0.07, bagHip[1] - 0.01, 0.03];
      capsule(strapTop, bag, 0.011, 0.013);
      capsule([bag[0], bag[1] - 0.015, bag[2]], [bag[0], bag[1] + 0.025, bag[2]], 0.05, 0.014);
      return;
    }
  }
}

function drawHead({ items, canvas, skeleton, attrs, light, px, py, scale }: FigureDrawing, neckRadius: number, skin: RGB, hair: RGB): void {
  const c = skeleton.headCenter;
  const hr = skeleton.headRadius * scale;
  const cx = px(c);
  const cy = py(c);
  const facing = skeleton.facing;
  // Image-space x of the back of the head: opposite the way the face turns.
  const backX = -facing[0];
  const style = attrs.hairStyle;
  items.push({ depth: 0.02, draw: () => drawCapsule(canvas, px(skeleton.neck), py(skeleton.neck) + 0.01 * scale, cx, cy, neckRadius * scale, skin, light) });
  if (style === 'long') {
    items.push({
      depth: -0.05,
      draw: () => {
        const x0 = cx - hr * 1.02 + backX * hr * 0.3;
        const x1 = cx + hr * 1.02 + backX * hr * 0.3;
        const bottom = cy + hr * 2.1;
        // From the head's middle down: the top of the hair is the round cap drawn over the head.
        canvas.each(x0, cy, x1, bottom, (x, y, ix, iy) => {
          const u = (x - (x0 + x1) / 2) / ((x1 - x0) / 2);
          const taper = 1 - 0.25 * Math.max(0, (y - cy) / (bottom - cy));
          if (Math.abs(u) > taper) return;
          if (y > bottom - hr * 0.35 * (1 - u * u)) return;
          paint(canvas, ix, iy, hair, [u * 0.8, 0, Math.sqrt(1 - 0.64 * u * u)], light);
        });
      },
    });
  }
  if (style === 'ponytail') {
    const side = Math.abs(backX) > 0.2 ? Math.sign(backX) : attrs.joints.yaw >= 0 ? -1 : 1;
    items.push({
      depth: -0.05,
      draw: () => drawCapsule(canvas, cx + side * hr * 0.85, cy - hr * 0.55, cx + side * hr * 1.45, cy + hr * 1.3, hr * 0.34, hair, light),
    });
  }
  items.push({ depth: 0.03, draw: () => drawSphere(canvas, cx, cy, hr, skin, light) });
  items.push({
    depth: 0.031,
    draw: () => {
      // Eyes on the face side of the head, one or two depending on the turn.
      const eyeY = cy + hr * 0.08;
      const eyes = [-1, 1]
        .map((s) => ({ x: cx + hr * (0.38 * s * facing[2] + 0.62 * facing[0]), visible: facing[2] * 0.9 + s * facing[0] > -0.3 }))
        .filter((e) => e.visible && Math.abs(e.x - cx) < hr * 0.85);
      const er = Math.max(0.6, hr * 0.13);
      for (const eye of eyes) canvas.each(eye.x - er, eyeY - er, eye.x + er, eyeY + er, (x, y, ix, iy) => {
        if ((x - eye.x) ** 2 + (y - eyeY) ** 2 <= er * er) canvas.set(ix, iy, 0.12, 0.08, 0.07);
      });
    },
  });
  if (style !== 'bald') {
    items.push({
      depth: 0.032,
      draw: () => {
        const R = hr * 1.1;
        const fringe = style === 'short' ? -0.3 : -0.2;
        canvas.each(cx - R, cy - R, cx + R, cy + R, (x, y, ix, iy) => {
          const dx = (x - cx) / R;
          const dy = (y - cy) / R;
          const d2 = dx * dx + dy * dy;
          if (d2 > 1) return;
          const towardBack = dx * backX;
          const covered = dy < fringe + 0.12 * Math.cos(dx * 3) || (towardBack > 0.3 * (1 - Math.abs(backX)) + 0.1 && dy < 0.35) || (style === 'long' && Math.abs(dx) > 0.78 && dy < 0.6);
          if (!covered) return;
          paint(canvas, ix, iy, hair, [dx, dy, Math.sqrt(Math.max(0, 1 - d2))], light);
        });
      },
    });
  }
}

/** Box-filters the supersampled canvas down, adds texture noise, and writes CHW in [-1, 1]. */
function downsample(canvas: Canvas, size: number, ss: number, random: () => number, noise: number): Float32Array {
  const out = new Float32Array(3 * size * size);
  const plane = size * size;
  const inv = 1 / (ss * ss);
  const S = canvas.width;
  const d = canvas.data;
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      let r = 0;
      let g = 0;
      let b = 0;
      for (let sy = 0; sy < ss; sy++) {
        let i = ((y * ss + sy) * S + x * ss) * 3;
        for (let sx = 0; sx < ss; sx++, i += 3) {
          r += d[i]!;
          g += d[i + 1]!;
          b += d[i + 2]!;
        }
      }
      const grain = (random() * 2 - 1) * noise;
      const o = y * size + x;
      out[o] = clampUnit(r * inv + grain + (random() * 2 - 1) * noise * 0.3) * 2 - 1;
      out[plane + o] = clampUnit(g * inv + grain + (random() * 2 - 1) * noise * 0.3) * 2 - 1;
      out[2 * plane + o] = clampUnit(b * inv + grain + (random() * 2 - 1) * noise * 0.3) * 2 - 1;
    }
  }
  return out;
}

function clampUnit(v: number): number {
  return v < 0 ? 0 : v > 1 ? 1 : v;
}

// ---------------------------------------------------------------------------------------------
// The dataset

export interface FiguresDatasetOptions {
  /** Image side in pixels (default 32). */
  size?: number;
  seed?: number;
  /**
   * Number of distinct people; example i shows identity i % identities with its own pose,
   * background and light. Default: every example is a new person.
   */
  identities?: number;
  /** Keep rendered images in memory (default: when all of them fit in 256 MB). */
  cache?: boolean;
}

export interface FiguresDataset extends Dataset {
  attributes(i: number): FigureAttributes;
}

/**
 * The attributes of figure `i` of the figures with `seed`: a pure function of the three, shared
 * by the datasets and the render-ahead stream. With `identities`, figure i shows identity
 * i % identities.
 */
export function figureAttributesAt(seed: number, i: number, identities?: number): FigureAttributes {
  const exampleSeed = mixSeed(seed, i);
  if (identities === undefined) return sampleFigureAttributes(exampleSeed);
  return sampleFigureAttributes(exampleSeed, { fixed: sampleIdentity(mixSeed(seed, 0x1d, i % identities)) });
}

/** A rendered image ([-1, 1] floats) as bytes: round((v + 1) * 127.5). */
export function quantizeImage(image: Float32Array, out = new Uint8Array(image.length)): Uint8Array {
  for (let i = 0; i < image.length; i++) out[i] = Math.round((Math.min(1, Math.max(-1, image[i]!)) + 1) * 127.5);
  return out;
}

/** Bytes back to [-1, 1] floats. */
export function dequantizeImage(bytes: Uint8Array, out = new Float32Array(bytes.length)): Float32Array {
  for (let i = 0; i < bytes.length; i++) out[i] = bytes[i]! / 127.5 - 1;
  return out;
}

/** `n` procedural figures; synchronous (`get` renders, `load` has nothing to do). */
export function figuresDataset(n: number, options: FiguresDatasetOptions = {}): FiguresDataset {
  if (!Number.isInteger(n) || n < 1) throw new RangeError(`figuresDataset: n must be an integer >= 1, got ${n}`);
  const size = options.size ?? 32;
  if (!Number.isInteger(size) || size < 8) throw new RangeError(`figuresDataset: size must be an integer >= 8, got ${size}`);
  const seed = options.seed ?? 0;
  const identities = options.identities;
  if (identities !== undefined && (!Number.isInteger(identities) || identities < 1)) {
    throw new RangeError(`figuresDataset: identities must be an integer >= 1, got ${identities}`);
  }
  const cacheAll = options.cache ?? n * 3 * size * size * 4 <= 256 * 1024 * 1024;
  const cache = new Map<number, Float32Array>();
  const attributes = (i: number): FigureAttributes => {
    if (!Number.isInteger(i) || i < 0 || i >= n) throw new RangeError(`figuresDataset: index ${i} out of range [0, ${n})`);
    return figureAttributesAt(seed, i, identities);
  };
  return {
    size: n,
    imageSize: size,
    attributes,
    caption: (i) => captionFor(attributes(i)),
    get(i): Example {
      const attrs = attributes(i);
      let image = cache.get(i);
      if (image === undefined) {
        image = renderFigure(attrs, size);
        if (cacheAll) cache.set(i, image);
      }
      return { image, caption: captionFor(attrs) };
    },
    load: async () => {},
  };
}
