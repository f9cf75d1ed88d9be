// HyperDreamBooth (SPEC section 3): LiDB layers, pre-optimisation, the hypernetwork's training,
// the rank-relaxed fast finetune and the measures of a personalisation.
export { identityToken, identitySubject, identityPrompt, identityViews, identityView, identityInScene, personalIdentity, recontextScenes, loadReferenceImage, readReference, referenceLimits, identitySeeds, type Scene, type IdentityView, type ReferenceImage, type ReferenceSource } from './identities.js';
export { personalizedLayers, personalizedLayerNames, attachIdentityLidb, defaultLidbShape, lidbParameters, saveHypernet, loadHypernet, checkHypernetFits, hypernetFormat, type LidbShape, type HypernetMeta, type HypernetFile } from './lidb.js';
export { fitIdentity, type IdentityExamples, type FitOptions } from './fit.js';
export { preoptimize, preoptDefaults, readPreoptRecord, readPreoptWeights, identityFile, type PreoptOptions, type PreoptSettings, type PreoptRecord } from './preopt.js';
export { trainHypernet, hypernetTrainDefaults, type HypernetTrainOptions, type HypernetTrainSettings } from './hypernet_train.js';
export { personalize, personalizeDefaults, autoPrompt, shippedHypernet, type PersonalizeOptions, type PersonalizeResult, type PersonalizeSettings } from './personalize.js';
export { dreamBooth, type DreamBoothOptions } from './dreambooth.js';
export { measureIdentity, measureImages, type MeasureOptions, type IdentityMeasure, type Evaluators } from './measure.js';
