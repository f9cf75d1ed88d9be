// The embedded default data: a procedural generator of small people, pure TypeScript and
// deterministic by seed, so the library can train and be tested with no image files at all.
//
// A figure is a 3-D stick skeleton (pelvis, spine, shoulders, hips, elbows, knees) whose joint
// angles stay within anatomical limits, turned about the vertical axis (yaw) and projected
// orthographically; limbs are capsules, the torso a rounded quad, the head a sphere, all shaded
// toward one light direction. It is drawn at `supersample` x the target size and box-filtered
// down, so edges are smooth at 32x32 and 64x64. Every visible attribute has a named value from
// a small palette, so captions use the words that describe the pixels.
//
// This file is the public face; the parts live in figures/:
//   attributes  palettes, attribute types, joint limits     sampling    identities, poses, scenes from seeds
//   captions    the words for the attributes                skeleton    3-D joints from angles and proportions
//   layout      where the figure sits in the frame          canvas      the rasteriser's shapes and shading
//   background  park, wall and plain scenes                 render      the figure drawn and downsampled
//   dataset     figuresDataset and the byte form of images
export {
  ACCESSORIES,
  BACKGROUND_COLORS,
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
  YAW_LIMIT,
  type Accessory,
  type BackgroundColor,
  type BackgroundKind,
  type BodyProportions,
  type FigureAttributes,
  type HairColor,
  type HairStyle,
  type IdentityAttributes,
  type JointAngles,
  type LightDirection,
  type LimbAngles,
  type LowerWear,
  type Pose,
  type ShirtColor,
  type ShirtPattern,
  type SkinTone,
  type TrouserColor,
} from './figures/attributes.js';
export { figureAttributesAt, identityOf, mixSeed, sampleFigureAttributes, sampleIdentity, type SampleFigureOptions } from './figures/sampling.js';
export { backgroundPhrase, captionFor, identityCaption, scenePhrase } from './figures/captions.js';
export { buildSkeleton, type Skeleton } from './figures/skeleton.js';
export { figureLayout, type FigureLayout } from './figures/layout.js';
export { renderFigure, type RenderOptions } from './figures/render.js';
export { dequantizeImage, figuresDataset, quantizeImage, type FiguresDataset, type FiguresDatasetOptions } from './figures/dataset.js';
