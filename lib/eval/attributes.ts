// The captioned attributes of a figure as classification targets: one head per attribute, with
// its class names, the label of a rendered figure, and the value a prompt asks for (read from the
// caption grammar of lib/data/figures, so any prompt in that vocabulary can be checked).
import {
  BACKGROUND_COLORS,
  BACKGROUND_KINDS,
  HAIR_COLORS,
  HAIR_STYLES,
  LIGHT_DIRECTIONS,
  LOWER_WEARS,
  POSES,
  SHIRT_COLORS,
  SKIN_TONES,
  TROUSER_COLORS,
  type FigureAttributes,
} from '../data/figures.js';

export interface AttributeHead {
  name: string;
  classes: readonly string[];
  /** The class of a rendered figure, or -1 where it has none (a bald person's hair colour). */
  label(attrs: FigureAttributes): number;
}

const keys = (o: object): string[] => Object.keys(o);

function head(name: string, classes: readonly string[], value: (a: FigureAttributes) => string | null): AttributeHead {
  return {
    name,
    classes,
    label: (attrs) => {
      const v = value(attrs);
      return v === null ? -1 : classes.indexOf(v);
    },
  };
}

/** Every captioned attribute, in a fixed order (the classifier's heads). */
export const ATTRIBUTE_HEADS: readonly AttributeHead[] = [
  head('skin', keys(SKIN_TONES), (a) => a.skinTone),
  head('hairStyle', HAIR_STYLES, (a) => a.hairStyle),
  head('hairColor', keys(HAIR_COLORS), (a) => (a.hairStyle === 'bald' ? null : a.hairColor)),
  head('shirt', keys(SHIRT_COLORS), (a) => a.shirtColor),
  head('lowerWear', LOWER_WEARS, (a) => a.lowerWear),
  head('lowerColor', keys(TROUSER_COLORS), (a) => a.trouserColor),
  head('pose', POSES, (a) => a.pose),
  head('background', BACKGROUND_KINDS, (a) => a.background),
  head('backgroundColor', keys(BACKGROUND_COLORS), (a) => a.backgroundColor),
  head('light', LIGHT_DIRECTIONS, (a) => a.lightDir),
];

export const ATTRIBUTE_NAMES: readonly string[] = ATTRIBUTE_HEADS.map((h) => h.name);

/** The labels of a figure, one per head (-1: not applicable). */
export function attributeLabels(attrs: FigureAttributes): number[] {
  return ATTRIBUTE_HEADS.map((h) => h.label(attrs));
}

const POSE_WORDS: Readonly<Record<string, string>> = {
  standing: 'standing',
  walking: 'walking',
  'with arms raised': 'arms raised',
  sitting: 'sitting',
  waving: 'waving',
  running: 'running',
};

/**
 * The attribute values a prompt asks for, by head name (class index), read from the caption
 * grammar of the figures ("a person with tan skin and long red hair wearing a blue shirt and a
 * black skirt, waving, in front of a pink wall, lit from the left"). Attributes a prompt does not
 * name are absent: adherence is measured on what was asked.
 */
export function attributesFromPrompt(prompt: string): Record<string, number> {
  const out: Record<string, number> = {};
  const set = (name: string, value: string | undefined): void => {
    if (value === undefined) return;
    const headDef = ATTRIBUTE_HEADS.find((h) => h.name === name)!;
    const index = headDef.classes.indexOf(value);
    if (index >= 0) out[name] = index;
  };
  const text = prompt.toLowerCase();
  set('skin', /with (\w+) skin/.exec(text)?.[1]);
  if (/\bbald person\b/.test(text)) set('hairStyle', 'bald');
  const hair = /(?:and |with )(short|long) (\w+) hair/.exec(text);
  if (hair) {
    set('hairStyle', hair[1]);
    set('hairColor', hair[2]);
  }
  const ponytail = /(\w+) hair in a ponytail/.exec(text);
  if (ponytail) {
    set('hairStyle', 'ponytail');
    set('hairColor', ponytail[1]);
  }
  set('shirt', /wearing an? (\w+) shirt/.exec(text)?.[1]);
  const skirt = /shirt and an? (\w+) skirt/.exec(text);
  const legs = /shirt and (\w+) (trousers|shorts)/.exec(text);
  if (skirt) {
    set('lowerWear', 'skirt');
    set('lowerColor', skirt[1]);
  } else if (legs) {
    set('lowerWear', legs[2]);
    set('lowerColor', legs[1]);
  }
  for (const [phrase, pose] of Object.entries(POSE_WORDS)) if (new RegExp(`, ${phrase}(,|$)`).test(text)) set('pose', pose);
  const scene = /in front of an? (\w+) (park|wall)/.exec(text);
  const plain = /on a plain (\w+) background/.exec(text);
  if (scene) {
    set('background', scene[2]);
    set('backgroundColor', scene[1]);
  } else if (plain) {
    set('background', 'plain');
    set('backgroundColor', plain[1]);
  }
  set('light', /lit from (?:the )?(left|right|above|front)/.exec(text)?.[1]);
  return out;
}

/**
 * Per head, the share of images whose predicted class is what their prompt asks for, over the
 * images whose prompt names that attribute (heads no prompt names are absent). `predictions` is
 * the classifier's [head][image]; images come `perPrompt` per prompt, prompt-major.
 */
export function promptAdherence(prompts: readonly string[], predictions: readonly (readonly number[])[], perPrompt = 1): Record<string, number> {
  const asked = prompts.map(attributesFromPrompt);
  const adherence: Record<string, number> = {};
  ATTRIBUTE_HEADS.forEach((h, k) => {
    let hits = 0;
    let total = 0;
    asked.forEach((a, p) => {
      const want = a[h.name];
      if (want === undefined) return;
      for (let s = 0; s < perPrompt; s++) {
        total++;
        if (predictions[k]![p * perPrompt + s] === want) hits++;
      }
    });
    if (total > 0) adherence[h.name] = hits / total;
  });
  return adherence;
}
