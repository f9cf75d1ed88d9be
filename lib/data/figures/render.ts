// The figure renderer: the body parts as depth-sorted shaded shapes (legs, torso and its shirt
// pattern, lower wear, accessory, arms, head and hair) drawn at `supersample` x the target size
// over the background, then box-filtered down with a little texture noise to CHW in [-1, 1].
import { seededRandom } from '../../host_random.js';
import { HAIR_COLORS, SHIRT_COLORS, SKIN_TONES, TROUSER_COLORS, type FigureAttributes, type IdentityAttributes, type RGB } from './attributes.js';
import { drawBackground } from './background.js';
import { Canvas, drawCapsule, drawEllipseShadow, drawRoundedHull, drawSphere, lighten, LIGHT_VECTORS, paint, type Light } from './canvas.js';
import { place, radii } from './layout.js';
import { add, buildSkeleton, normalize, type Skeleton, type Vec3 } from './skeleton.js';

const SHOE: RGB = [0.12, 0.1, 0.09];
const STOOL: RGB = [0.45, 0.3, 0.18];

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
