// Captions: the words for a figure's named attributes (person, pose, scene, light), so a caption
// describes exactly what the pixels show and nothing the pixels do not.
import type { BackgroundColor, BackgroundKind, FigureAttributes, IdentityAttributes, LightDirection, Pose } from './attributes.js';

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

/** The scene part of a caption: "running, in front of a green park, lit from the left". */
export function scenePhrase(scene: Pick<FigureAttributes, 'pose' | 'background' | 'backgroundColor' | 'lightDir'>): string {
  return `${POSE_PHRASES[scene.pose]}, ${backgroundPhrase(scene.background, scene.backgroundColor)}, ${LIGHT_PHRASES[scene.lightDir]}`;
}

export function captionFor(attrs: FigureAttributes): string {
  return `${identityCaption(attrs)}, ${scenePhrase(attrs)}`;
}
