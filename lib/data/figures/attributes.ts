// The vocabulary of a figure: the named palettes (skin, hair, clothes, backgrounds) whose names
// are the caption words, the attribute types of a person and a scene, and the anatomical limits
// every sampled pose respects.

export type RGB = readonly [number, number, number];

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
