export { Tokenizer, PAD, BOS, EOS, type EncodedText, type EncodedBatch, type TokenizerJSON } from './tokenizer.js';
