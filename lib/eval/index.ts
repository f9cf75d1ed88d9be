// Measuring images: the evaluator networks (attribute classifier, identity embedder, caption
// scorer), the network-free measures (Fréchet distance, hue distance, sharpness, channel drift),
// the ONNX adapter for a user's own scorer or feature extractor, and the report of a checkpoint.
export { ATTRIBUTE_HEADS, ATTRIBUTE_NAMES, attributeLabels, attributesFromPrompt, promptAdherence, type AttributeHead } from './attributes.js';
export {
  AttributeClassifier,
  IdentityEmbedder,
  CaptionScorer,
  loadEvaluator,
  shippedEvaluator,
  saveEvaluator,
  defaultImageEncoderConfig,
  evaluatorFormat,
  type Evaluator,
  type EvaluatorKind,
  type CaptionScorerConfig,
} from './networks.js';
export {
  trainAttributeClassifier,
  trainIdentityEmbedder,
  trainCaptionScorer,
  validateAttributeClassifier,
  validateIdentityEmbedder,
  validateCaptionScorer,
  identitiesWithTwins,
  renderIdentityView,
  rocAuc,
  VALIDATION_SEED,
  type EvaluatorTrainOptions,
  type IdentityValidation,
  type ScorerValidation,
} from './train.js';
export {
  symmetricEigen,
  frechetDistance,
  frechetDistanceInfinity,
  meanHue,
  setMeanHue,
  hueDistance,
  sharpness,
  meanSharpness,
  channelMeanDrift,
  blurImage,
  addNoise,
  shiftColor,
  type ImageSet,
  type FrechetExtrapolation,
  type FrechetExtrapolationOptions,
  type FeatureMatrix,
  type SymmetricEigen,
  type ChannelMeanDrift,
} from './metrics.js';
export { OnnxModel, onnxFeatureExtractor, onnxScorer, type OnnxModelOptions, type OnnxOutput, type DeclaredShape, type FeatureExtractor, type Scorer } from './onnx.js';
export { evaluateModel, formatReport, heldOutSet, heldOutPrompts, type EvaluateOptions, type EvaluationReport } from './report.js';
