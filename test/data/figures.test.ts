import { describe, expect, it } from 'vitest';
import {
  ACCESSORIES,
  SHIRT_PATTERNS,
  BACKGROUND_COLORS_BY_KIND,
  HAIR_COLORS,
  JOINT_LIMITS,
  POSES,
  SHIRT_COLORS,
  SKIN_TONES,
  TROUSER_COLORS,
  YAW_LIMIT,
  buildSkeleton,
  captionFor,
  figureLayout,
  figuresDataset,
  identityOf,
  renderFigure,
  sampleFigureAttributes,
  sampleIdentity,
  type FigureAttributes,
  type LimbAngles,
  type ShirtColor,
} from '../../lib/data/figures.js';
type RGB = readonly [number, number, number];
import { testSeed } from '../helpers.js';

const seeds = Array.from({ length: 48 }, (_, i) => testSeed * 48 + i);

function pixel(image: Float32Array, size: number, x: number, y: number): [number, number, number] {
  const o = Math.round(y) * size + Math.round(x);
  const plane = size * size;
  return [(image[o]! + 1) / 2, (image[plane + o]! + 1) / 2, (image[2 * plane + o]! + 1) / 2];
}

/** The palette entry closest in chromaticity-weighted RGB (brightness varies with the lighting). */
function nearestShirtColor(rgb: readonly number[]): ShirtColor {
  let best: ShirtColor = 'red';
  let bestDistance = Infinity;
  const sum = rgb[0]! + rgb[1]! + rgb[2]! + 1e-6;
  for (const [name, c] of Object.entries(SHIRT_COLORS) as [ShirtColor, readonly number[]][]) {
    // Compare chromaticity and brightness after normalising out a global shading factor.
    const k = Math.min(1.6, Math.max(0.5, (c[0]! + c[1]! + c[2]! + 1e-6) / sum));
    const d = (rgb[0]! * k - c[0]!) ** 2 + (rgb[1]! * k - c[1]!) ** 2 + (rgb[2]! * k - c[2]!) ** 2 + 0.3 * (Math.log(k) ** 2);
    if (d < bestDistance) {
      bestDistance = d;
      best = name;
    }
  }
  return best;
}

describe('procedural figures', () => {
  it('samples and renders deterministically by seed', () => {
    for (const seed of seeds.slice(0, 4)) {
      const a = sampleFigureAttributes(seed);
      expect(sampleFigureAttributes(seed)).toEqual(a);
      const image = renderFigure(a, 32);
      expect(renderFigure(a, 32)).toEqual(image);
      expect(renderFigure(a, 32, { seed: a.detailSeed + 1 })).not.toEqual(image);
    }
    expect(sampleFigureAttributes(seeds[0]!)).not.toEqual(sampleFigureAttributes(seeds[1]!));
  });

  it('renders 3 x size x size values in [-1, 1] at 32 and 64, the figure inside the frame', () => {
    for (const size of [32, 64]) {
      for (const seed of seeds.slice(0, 6)) {
        const attrs = sampleFigureAttributes(seed);
        const image = renderFigure(attrs, size);
        expect(image.length).toBe(3 * size * size);
        for (const v of image) expect(v >= -1 && v <= 1).toBe(true);
        const layout = figureLayout(attrs, size);
        const [x0, y0, x1, y1] = layout.box;
        expect(x0).toBeGreaterThanOrEqual(-0.5);
        expect(x1).toBeLessThanOrEqual(size + 0.5);
        expect(y0).toBeGreaterThanOrEqual(-0.5);
        expect(y1).toBeLessThanOrEqual(size + 0.5);
      }
    }
  });

  it('a standing figure fills about 70-85% of the frame height, near the centre', () => {
    for (const seed of seeds) {
      const attrs = sampleFigureAttributes(seed, { pose: 'standing' });
      const [x0, y0, x1, y1] = figureLayout(attrs, 64).box;
      const height = (y1 - y0) / 64;
      expect(height, `seed ${seed}`).toBeGreaterThan(0.66);
      expect(height, `seed ${seed}`).toBeLessThan(0.9);
      expect(Math.abs((x0 + x1) / 2 / 64 - 0.5)).toBeLessThan(0.1);
    }
  });

  it('holds identity fixed while pose, background and light vary', () => {
    const identity = sampleIdentity(testSeed);
    const samples = seeds.map((seed) => sampleFigureAttributes(seed, { fixed: identity }));
    for (const s of samples) expect(identityOf(s)).toEqual(identity);
    expect(new Set(samples.map((s) => s.pose)).size).toBeGreaterThan(3);
    expect(new Set(samples.map((s) => s.background)).size).toBe(3);
    expect(new Set(samples.map((s) => s.lightDir)).size).toBeGreaterThan(2);
    expect(new Set(samples.map((s) => JSON.stringify(s.joints))).size).toBe(samples.length);
    // Fixing the identity does not change which pose a seed draws.
    for (const seed of seeds.slice(0, 8)) expect(sampleFigureAttributes(seed, { fixed: identity }).joints).toEqual(sampleFigureAttributes(seed).joints);
  });

  it('keeps every joint angle within its anatomical limits, in every pose family', () => {
    for (const pose of POSES) {
      for (const seed of seeds) {
        const { joints } = sampleFigureAttributes(seed, { pose });
        expect(Math.abs(joints.yaw)).toBeLessThanOrEqual(YAW_LIMIT);
        for (const side of [joints.left, joints.right]) {
          for (const [key, [min, max]] of Object.entries(JOINT_LIMITS) as [keyof LimbAngles, readonly [number, number]][]) {
            expect(side[key], `${pose} seed ${seed} ${key}`).toBeGreaterThanOrEqual(min);
            expect(side[key], `${pose} seed ${seed} ${key}`).toBeLessThanOrEqual(max);
          }
        }
      }
    }
  });

  it('keeps limb lengths fixed whatever the angles (bones do not stretch)', () => {
    const length = (a: readonly number[], b: readonly number[]) => Math.hypot(a[0]! - b[0]!, a[1]! - b[1]!, a[2]! - b[2]!);
    const identity = sampleIdentity(testSeed + 1);
    const reference = buildSkeleton(sampleFigureAttributes(1, { fixed: identity, pose: 'standing' }));
    for (const pose of POSES) {
      const s = buildSkeleton(sampleFigureAttributes(testSeed, { fixed: identity, pose }));
      for (const side of ['left', 'right'] as const) {
        expect(length(s.shoulder[side], s.elbow[side])).toBeCloseTo(length(reference.shoulder[side], reference.elbow[side]), 9);
        expect(length(s.elbow[side], s.wrist[side])).toBeCloseTo(length(reference.elbow[side], reference.wrist[side]), 9);
        expect(length(s.hip[side], s.knee[side])).toBeCloseTo(length(reference.hip[side], reference.knee[side]), 9);
        expect(length(s.knee[side], s.ankle[side])).toBeCloseTo(length(reference.knee[side], reference.ankle[side]), 9);
      }
    }
  });

  it('poses differ in geometry: raised arms put the wrists above the head, sitting lifts the knees', () => {
    for (const seed of seeds.slice(0, 12)) {
      const raised = buildSkeleton(sampleFigureAttributes(seed, { pose: 'arms raised' }));
      expect(raised.wrist.left[1]).toBeLessThan(raised.headCenter[1]);
      expect(raised.wrist.right[1]).toBeLessThan(raised.headCenter[1]);
      const sitting = buildSkeleton(sampleFigureAttributes(seed, { pose: 'sitting' }));
      expect(Math.abs(sitting.knee.left[1] - sitting.hip.left[1])).toBeLessThan(0.06);
      const standing = buildSkeleton(sampleFigureAttributes(seed, { pose: 'standing' }));
      expect(standing.wrist.left[1]).toBeGreaterThan(standing.hip.left[1] - 0.1);
      expect(standing.ankle.left[1] - standing.hip.left[1]).toBeGreaterThan(0.4);
    }
  });

  it('captions name the colours, hair, clothes, pose, background and light', () => {
    for (const seed of seeds) {
      const a = sampleFigureAttributes(seed);
      const caption = captionFor(a);
      expect(caption).toContain(`${a.skinTone} skin`);
      expect(caption).toContain(`${a.shirtColor} shirt`);
      expect(caption).toContain(a.lowerWear === 'skirt' ? `${a.trouserColor} skirt` : `${a.trouserColor} ${a.lowerWear}`);
      if (a.hairStyle === 'bald') expect(caption).toContain('bald');
      else expect(caption).toContain(`${a.hairColor} hair`);
      if (a.hairStyle === 'short' || a.hairStyle === 'long') expect(caption).toContain(`${a.hairStyle} ${a.hairColor} hair`);
      if (a.hairStyle === 'ponytail') expect(caption).toContain('ponytail');
      expect(caption).toContain(`${a.backgroundColor} ${a.background === 'plain' ? 'background' : a.background}`);
      expect(caption).toContain(a.pose === 'arms raised' ? 'arms raised' : a.pose);
      expect(caption).toMatch(/lit from (the left|the right|above|the front)$/);
      expect(caption).not.toMatch(/\ba [aeiou]/);
      expect(BACKGROUND_COLORS_BY_KIND[a.background]).toContain(a.backgroundColor);
    }
    const a: FigureAttributes = { ...sampleFigureAttributes(0), skinTone: 'brown', hairStyle: 'short', hairColor: 'black', shirtColor: 'red', trouserColor: 'blue', lowerWear: 'trousers', pose: 'walking', background: 'park', backgroundColor: 'green', lightDir: 'left' };
    expect(captionFor(a)).toBe('a person with brown skin and short black hair wearing a red shirt and blue trousers, walking, in front of a green park, lit from the left');
  });

  it('the shirt colour dominates the chest, the skin tone the face (figures facing the viewer)', () => {
    let shirtHits = 0;
    let skinHits = 0;
    let total = 0;
    // In profile the near arm hangs over the narrow chest, so only figures turned less than 30 degrees count.
    const frontal = Array.from({ length: 400 }, (_, i) => testSeed * 400 + i).filter((seed) => Math.abs(sampleFigureAttributes(seed).joints.yaw) <= 30).slice(0, 40);
    for (const seed of frontal) {
      // The chest is read on a plain shirt: a pattern or a scarf would cover it by design.
      const attrs: FigureAttributes = { ...sampleFigureAttributes(seed), shirtPattern: 'plain', accessory: 'none' };
      const size = 64;
      const image = renderFigure(attrs, size, { noise: 0 });
      const layout = figureLayout(attrs, size);
      const [cx, cy] = layout.chest;
      const rgb = [0, 0, 0];
      for (let dy = -1; dy <= 1; dy++) for (let dx = -1; dx <= 1; dx++) pixel(image, size, cx + dx, cy + dy).forEach((v, c) => (rgb[c]! += v / 9));
      if (nearestShirtColor(rgb) === attrs.shirtColor) shirtHits++;
      // The face: just below the head centre, on the side the figure faces.
      const [hx, hy] = layout.head;
      const face = pixel(image, size, hx, hy + layout.headRadius * 0.45);
      // Shading scales all channels; ratios between channels identify the tone family.
      const ratio = (c: readonly number[]) => [c[0]! / (c[2]! + 0.02), c[1]! / (c[2]! + 0.02)];
      const target = ratio(SKIN_TONES[attrs.skinTone]);
      const got = ratio(face);
      if (Math.hypot(target[0]! - got[0]!, target[1]! - got[1]!) < 0.5 * Math.hypot(target[0]!, target[1]!)) skinHits++;
      total++;
    }
    expect(total).toBe(40);
    expect(shirtHits / total).toBeGreaterThanOrEqual(0.95);
    expect(skinHits / total).toBeGreaterThanOrEqual(0.85);
  });

  it('the unnamed traits (pattern, accessory, proportions) change the pixels at 32x32 but never the caption', () => {
    const size = 32;
    const changed = (a: FigureAttributes, b: FigureAttributes): number => {
      const x = renderFigure(a, size, { noise: 0 });
      const y = renderFigure(b, size, { noise: 0 });
      let pixels = 0;
      for (let i = 0; i < size * size; i++) {
        const d = Math.abs(x[i]! - y[i]!) + Math.abs(x[i + size * size]! - y[i + size * size]!) + Math.abs(x[i + 2 * size * size]! - y[i + 2 * size * size]!);
        if (d > 0.3) pixels++;
      }
      return pixels;
    };
    for (let k = 0; k < 12; k++) {
      const base: FigureAttributes = { ...sampleFigureAttributes(testSeed + k, { pose: 'standing' }), shirtPattern: 'plain', accessory: 'none' };
      const mark: RGB = [0.1, 0.9, 0.8];
      for (const shirtPattern of SHIRT_PATTERNS.filter((p) => p !== 'plain')) {
        const other = { ...base, shirtPattern, patternColor: mark };
        expect(captionFor(other)).toBe(captionFor(base));
        expect(changed(base, other), `${shirtPattern} on seed ${testSeed + k}`).toBeGreaterThanOrEqual(2);
      }
      for (const accessory of ACCESSORIES.filter((a) => a !== 'none')) {
        const other = { ...base, accessory, accessoryColor: mark };
        expect(captionFor(other)).toBe(captionFor(base));
        expect(changed(base, other), `${accessory} on seed ${testSeed + k}`).toBeGreaterThanOrEqual(2);
      }
    }
    const people = Array.from({ length: 400 }, (_, i) => sampleIdentity(testSeed + i));
    expect(new Set(people.map((p) => p.shirtPattern)).size).toBe(SHIRT_PATTERNS.length);
    expect(new Set(people.map((p) => p.accessory)).size).toBe(ACCESSORIES.length);
    // Continuous colours: no palette, nearly every person has their own.
    expect(new Set(people.map((p) => p.patternColor.join())).size).toBeGreaterThan(395);
    for (const p of people) for (const c of [...p.patternColor, ...p.accessoryColor]) expect(c >= 0 && c <= 1).toBe(true);
  });

  it('every palette colour is reachable from sampling', () => {
    const many = Array.from({ length: 400 }, (_, i) => sampleFigureAttributes(testSeed + i));
    expect(new Set(many.map((a) => a.shirtColor)).size).toBe(Object.keys(SHIRT_COLORS).length);
    expect(new Set(many.map((a) => a.trouserColor)).size).toBe(Object.keys(TROUSER_COLORS).length);
    expect(new Set(many.map((a) => a.hairColor)).size).toBe(Object.keys(HAIR_COLORS).length);
    expect(new Set(many.map((a) => a.pose)).size).toBe(POSES.length);
  });

  it('figuresDataset: deterministic examples, fixed identities cycle, bad arguments are named', async () => {
    const a = figuresDataset(6, { size: 32, seed: testSeed });
    const b = figuresDataset(6, { size: 32, seed: testSeed });
    expect(a.size).toBe(6);
    expect(a.imageSize).toBe(32);
    await a.load();
    for (let i = 0; i < 6; i++) {
      const ea = a.get(i);
      expect(ea.image.length).toBe(3 * 32 * 32);
      expect(ea).toEqual(b.get(i));
      expect(a.caption(i)).toBe(ea.caption);
      expect(ea.caption).toBe(captionFor(a.attributes(i)));
    }
    expect(a.get(0).caption).not.toBe(a.get(1).caption);
    const people = figuresDataset(8, { size: 32, seed: testSeed, identities: 2 });
    expect(identityOf(people.attributes(0))).toEqual(identityOf(people.attributes(2)));
    expect(identityOf(people.attributes(1))).toEqual(identityOf(people.attributes(7)));
    expect(identityOf(people.attributes(0))).not.toEqual(identityOf(people.attributes(1)));
    expect(() => a.get(6)).toThrow(/index 6 out of range \[0, 6\)/);
    expect(() => figuresDataset(0)).toThrow(/n must be an integer >= 1, got 0/);
    expect(() => renderFigure(a.attributes(0), 4)).toThrow(/size must be an integer >= 8, got 4/);
  });
});
