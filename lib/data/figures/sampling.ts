// Drawing figures from seeds: a person's identity, a pose within the joint limits, a scene; and
// figure i of a seed (optionally one of a fixed set of identities). Everything is a pure
// function of the seed, through independent streams derived with `mixSeed`.
import { seededRandom } from '../../host_random.js';
import {
  ACCESSORIES,
  BACKGROUND_COLORS_BY_KIND,
  BACKGROUND_KINDS,
  HAIR_COLORS,
  HAIR_STYLES,
  JOINT_LIMITS,
  LIGHT_DIRECTIONS,
  LOWER_WEARS,
  POSES,
  SHIRT_COLORS,
  SHIRT_PATTERNS,
  SKIN_TONES,
  TROUSER_COLORS,
  type FigureAttributes,
  type HairColor,
  type IdentityAttributes,
  type JointAngles,
  type LimbAngles,
  type Pose,
  type RGB,
  type ShirtColor,
  type SkinTone,
  type TrouserColor,
} from './attributes.js';

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

export function pick<T>(random: () => number, items: readonly T[]): T {
  return items[Math.floor(random() * items.length)]!;
}

export function uniform(random: () => number, lo: number, hi: number): number {
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
