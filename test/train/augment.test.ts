import { describe, expect, it } from 'vitest';
import { seededRandom } from '../../lib/host_random.js';
import { augment, cropResize, flipHorizontal, rotate, type HostImage } from '../../lib/train/augment.js';

function ramp(width: number, height: number): HostImage {
  const data = new Float32Array(3 * width * height);
  for (let c = 0; c < 3; c++) for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) data[(c * height + y) * width + x] = x + 100 * y + 1000 * c;
  return { data, channels: 3, height, width };
}

describe('augmentation', () => {
  it('flips mirror each row; flipping twice is the identity', () => {
    const img = ramp(5, 3);
    const f = flipHorizontal(img);
    expect(f.data[0]).toBe(4);
    expect(f.data[4]).toBe(0);
    expect(Array.from(flipHorizontal(f).data)).toEqual(Array.from(img.data));
  });

  it('a full-size crop and a zero rotation are the identity; a 180-degree rotation reverses', () => {
    const img = ramp(6, 6);
    const same = cropResize(img, 0, 0, 6);
    same.data.forEach((v, i) => expect(v).toBeCloseTo(img.data[i]!, 4));
    rotate(img, 0).data.forEach((v, i) => expect(v).toBeCloseTo(img.data[i]!, 4));
    const turned = rotate(img, 180);
    expect(turned.data[0]).toBeCloseTo(img.data[35]!, 3);
  });

  it('a half crop of the left-top quarter magnifies it', () => {
    const img = ramp(8, 8);
    const crop = cropResize(img, 0, 0, 4);
    // Output pixel centres map to half-pixel steps of the source: (7.5, 7.5) -> (3.75, 3.75).
    expect(crop.data[0]).toBeCloseTo(0, 5);
    expect(crop.data[63]).toBeCloseTo(3.25 + 325, 4);
  });

  it('is deterministic by seed and rejects bad options', () => {
    const img = ramp(8, 8);
    const opts = { flip: 0.5, cropScale: 0.8, maxRotation: 10 };
    const a = augment(img, opts, seededRandom(1)).data;
    const b = augment(img, opts, seededRandom(1)).data;
    expect(Array.from(a)).toEqual(Array.from(b));
    expect(() => augment(img, { cropScale: 1.5 }, seededRandom(1))).toThrow(/cropScale must be in \(0, 1\], got 1.5/);
  });
});
