// Data augmentation on host images (CHW Float32Array in [-1, 1]), applied before upload:
// horizontal flip, random crop (resized back), small rotation. Seeded, so a run replays.
export interface HostImage {
  data: Float32Array;
  channels: number;
  height: number;
  width: number;
}

export interface AugmentOptions {
  /** Probability of a horizontal flip. */
  flip?: number;
  /** Crop a random square of this fraction of the side (e.g. 0.9), then resize back; 1 = off. */
  cropScale?: number;
  /** Rotate by a uniform angle in [-maxRotation, maxRotation] degrees; 0 = off. */
  maxRotation?: number;
}

export function flipHorizontal(image: HostImage): HostImage {
  const { data, channels, height, width } = image;
  const out = new Float32Array(data.length);
  for (let c = 0; c < channels; c++) {
    for (let y = 0; y < height; y++) {
      const row = (c * height + y) * width;
      for (let x = 0; x < width; x++) out[row + x] = data[row + width - 1 - x]!;
    }
  }
  return { ...image, data: out };
}

/**
 * Samples the image through an affine map of output pixel centres to input coordinates, with
 * bilinear interpolation and edge clamping: the shared core of crop-and-resize and rotation.
 */
function resample(image: HostImage, map: (x: number, y: number) => [number, number]): HostImage {
  const { data, channels, height, width } = image;
  const out = new Float32Array(data.length);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const [sx, sy] = map(x + 0.5, y + 0.5);
      const fx = Math.min(Math.max(sx - 0.5, 0), width - 1);
      const fy = Math.min(Math.max(sy - 0.5, 0), height - 1);
      const x0 = Math.floor(fx);
      const y0 = Math.floor(fy);
      const x1 = Math.min(x0 + 1, width - 1);
      const y1 = Math.min(y0 + 1, height - 1);
      const wx = fx - x0;
      const wy = fy - y0;
      for (let c = 0; c < channels; c++) {
        const plane = c * height * width;
        const top = data[plane + y0 * width + x0]! * (1 - wx) + data[plane + y0 * width + x1]! * wx;
        const bottom = data[plane + y1 * width + x0]! * (1 - wx) + data[plane + y1 * width + x1]! * wx;
        out[plane + y * width + x] = top * (1 - wy) + bottom * wy;
      }
    }
  }
  return { ...image, data: out };
}

/** A `scale`-sided square crop at (left, top) in pixels, resized back to the full size. */
export function cropResize(image: HostImage, left: number, top: number, side: number): HostImage {
  const sx = side / image.width;
  const sy = side / image.height;
  return resample(image, (x, y) => [left + x * sx, top + y * sy]);
}

/** Rotation by `degrees` about the centre (counter-clockwise on screen). */
export function rotate(image: HostImage, degrees: number): HostImage {
  const a = (degrees * Math.PI) / 180;
  const cos = Math.cos(a);
  const sin = Math.sin(a);
  const cx = image.width / 2;
  const cy = image.height / 2;
  return resample(image, (x, y) => [cx + (x - cx) * cos - (y - cy) * sin, cy + (x - cx) * sin + (y - cy) * cos]);
}

/** The parameters of one augmentation, drawn before any pixel is touched. */
export interface Augmentation {
  flip: boolean;
  crop: { left: number; top: number; side: number } | null;
  /** Degrees; null: none. */
  rotation: number | null;
}

/**
 * Draws the parameters of one augmentation of a width x height image from `random`; the draws
 * depend on the options and the size only, so a data-parallel rank can draw those of the samples
 * other ranks compute and keep its streams in step.
 */
export function drawAugmentation(options: AugmentOptions, width: number, height: number, random: () => number): Augmentation {
  const flip = (options.flip ?? 0) > 0 && random() < options.flip!;
  const cropScale = options.cropScale ?? 1;
  if (!(cropScale > 0 && cropScale <= 1)) throw new RangeError(`augment: cropScale must be in (0, 1], got ${cropScale}`);
  let crop: Augmentation['crop'] = null;
  if (cropScale < 1) {
    const side = cropScale * Math.min(width, height);
    crop = { left: random() * (width - side), top: random() * (height - side), side };
  }
  const maxRotation = options.maxRotation ?? 0;
  return { flip, crop, rotation: maxRotation > 0 ? (random() * 2 - 1) * maxRotation : null };
}

/** Applies an augmentation drawn by drawAugmentation. */
export function applyAugmentation(image: HostImage, augmentation: Augmentation): HostImage {
  let out = image;
  if (augmentation.flip) out = flipHorizontal(out);
  if (augmentation.crop !== null) out = cropResize(out, augmentation.crop.left, augmentation.crop.top, augmentation.crop.side);
  if (augmentation.rotation !== null) out = rotate(out, augmentation.rotation);
  return out;
}

/** Applies the configured augmentations with parameters drawn from `random`. */
export function augment(image: HostImage, options: AugmentOptions, random: () => number): HostImage {
  return applyAugmentation(image, drawAugmentation(options, image.width, image.height, random));
}
