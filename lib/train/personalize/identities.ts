// The people personalisation learns (SPEC section 3): identities of the procedural figures, whose
// unnamed traits (body proportions, shirt pattern and accessory, their colours) no prompt can
// describe, so a model can only keep them by learning them from images. Training identities and
// held-out identities come from disjoint seed domains; the hypernetwork never sees a held-out one.
//
// Prompts name the person with a rare token, as DreamBooth does: "a photo of [V] person", then
// the scene in the caption grammar of the figures (pose, background, light), so that the token
// binds to the person and not to the scene of the reference image.
import sharp from 'sharp';
import { mixSeed, renderFigure, sampleFigureAttributes, sampleIdentity, scenePhrase, type FigureAttributes, type IdentityAttributes } from '../../data/figures.js';
import { decodeImageBytes, describeSource } from '../../io/image_decode.js';

/** The identifier of the person in every personalisation prompt. */
export const identityToken = '[V]';
/** The subject phrase of every personalisation prompt. */
export const identitySubject = `a photo of ${identityToken} person`;

export type Scene = Pick<FigureAttributes, 'pose' | 'background' | 'backgroundColor' | 'lightDir'>;

/** "a photo of [V] person, running, in front of a green park, lit from the left". */
export function identityPrompt(scene: Scene): string {
  return `${identitySubject}, ${scenePhrase(scene)}`;
}

/**
 * Seed domains: training identities (pre-optimisation, the hypernetwork, DSD's real pairs),
 * held-out ones (the benchmarks) and the people DSD's self-generated pairs describe in words.
 */
export const identitySeeds = { train: 0x7e50, heldOut: 0x4e1d, dsd: 0xd5d0 } as const;

/** Identity i of a domain. */
export function personalIdentity(domain: keyof typeof identitySeeds, index: number): IdentityAttributes {
  return sampleIdentity(mixSeed(identitySeeds[domain], index));
}

export interface IdentityView {
  /** CHW in [-1, 1]. */
  pixels: Float32Array;
  prompt: string;
  attributes: FigureAttributes;
}

/** A rendered figure with its [V] prompt. */
function viewOf(attributes: FigureAttributes, size: number): IdentityView {
  return { pixels: renderFigure(attributes, size), prompt: identityPrompt(attributes), attributes };
}

/** View `view` of a person: their identity in a scene, pose and light of its own, with its [V] prompt. */
export function identityView(identity: IdentityAttributes, identitySeed: number, view: number, size: number): IdentityView {
  return viewOf(sampleFigureAttributes(mixSeed(identitySeed, 0x5ce, view), { fixed: identity }), size);
}

/** The person in a given scene (pose, background, light); `seed` draws the rest (joints, offset, details). */
export function identityInScene(identity: IdentityAttributes, scene: Scene, seed: number, size: number): IdentityView {
  const sampled = sampleFigureAttributes(seed, { fixed: identity, pose: scene.pose });
  return viewOf({ ...sampled, background: scene.background, backgroundColor: scene.backgroundColor, lightDir: scene.lightDir }, size);
}

/** The reference image of a training or held-out identity (view 0) and its further views. */
export function identityViews(domain: keyof typeof identitySeeds, index: number, count: number, size: number): IdentityView[] {
  const identity = personalIdentity(domain, index);
  const seed = mixSeed(identitySeeds[domain], 0x71e, index);
  return Array.from({ length: count }, (_, v) => identityView(identity, seed, v, size));
}

/**
 * Recontextualisation scenes: for each of `count` scenes, a pose, a background and a light drawn
 * from `seed` (the benchmark's new contexts). Scenes other than the reference's are what show
 * whether the identity moved with the token or stayed with the reference's scene.
 */
export function recontextScenes(count: number, seed = 0x5c3e): Scene[] {
  return Array.from({ length: count }, (_, i) => {
    const { pose, background, backgroundColor, lightDir } = sampleFigureAttributes(mixSeed(seed, i));
    return { pose, background, backgroundColor, lightDir };
  });
}

/** Limits on a reference image: smaller than minSide is refused; larger is resized (documented). */
export const referenceLimits = { minSide: 16, maxPixels: 50_000_000 } as const;

export interface ReferenceImage {
  /** CHW in [-1, 1] at the model's size. */
  pixels: Float32Array;
  /** What was done to the file to make it (resized, alpha dropped, grey to RGB). */
  conversions: string[];
}

/**
 * Reads a reference image for personalisation: any format sharp decodes; alpha is flattened onto
 * white, a grey image is repeated into RGB, the shorter side is resized to `size` and the centre
 * square kept. Refused with a clear error: a file that is not an image, one with a side under
 * 16 pixels, one over 50 megapixels.
 */
export async function loadReferenceImage(source: string | Buffer, size: number, op = 'personalize'): Promise<ReferenceImage> {
  let meta: sharp.Metadata;
  try {
    meta = await sharp(source, { limitInputPixels: false }).metadata();
  } catch (error) {
    throw new Error(`${op}: reference image ${describeSource(source)} is not an image sharp can read: ${(error as Error).message}`, { cause: error });
  }
  const width = meta.width ?? 0;
  const height = meta.height ?? 0;
  if (Math.min(width, height) < referenceLimits.minSide) {
    throw new RangeError(`${op}: reference image ${describeSource(source)} is ${width}x${height}; expected at least ${referenceLimits.minSide} pixels on each side`);
  }
  if (width * height > referenceLimits.maxPixels) {
    throw new RangeError(`${op}: reference image ${describeSource(source)} is ${width}x${height} (${((width * height) / 1e6).toFixed(0)} megapixels); expected at most ${referenceLimits.maxPixels / 1e6} megapixels`);
  }
  const conversions: string[] = [];
  if (width !== size || height !== size) conversions.push(`resized from ${width}x${height} to ${size}x${size}${width !== height ? ' (centre square)' : ''}`);
  if (meta.hasAlpha) conversions.push('alpha flattened onto white');
  if ((meta.channels ?? 3) < 3 || meta.space === 'b-w') conversions.push('grey repeated into RGB (the colours of the person are unknown)');
  const bytes = await decodeImageBytes(source, { size }, op);
  return { pixels: Float32Array.from(bytes, (v) => (v / 255) * 2 - 1), conversions };
}

/** A reference as the SDK takes it: an image file or its bytes, or CHW pixels in [-1, 1] at the model's size. */
export type ReferenceSource = string | Buffer | Float32Array;

/** The pixels of a reference: pixels are checked for the model's size, files and bytes read by loadReferenceImage. */
export async function readReference(reference: ReferenceSource, size: number, op: string): Promise<ReferenceImage> {
  if (reference instanceof Float32Array) {
    if (reference.length !== 3 * size * size) throw new RangeError(`${op}: reference pixels hold ${reference.length} values, expected ${3 * size * size} (3x${size}x${size}, CHW in [-1, 1])`);
    return { pixels: reference, conversions: [] };
  }
  return loadReferenceImage(reference, size, op);
}
