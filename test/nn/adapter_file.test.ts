// Adapter files: the base-weights hash and the file's metadata, written and checked.
import { existsSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadSafetensors, saveSafetensors } from '../../lib/io/safetensors.js';
import { TextToImage } from '../../lib/models/text_to_image.js';
import { adapterFileFormat, adapterMetadataKey, adapterTensors, describeAdapters, readAdapterFile, saveAdapterFile, weightsHash } from '../../lib/nn/adapter_file.js';
import { adapterStateDict, attachLora, detachAdapters, mergeAdapters, unmergeAdapters } from '../../lib/nn/lora.js';
import { cast } from '../../lib/ops/cast.js';
import { Generator } from '../../lib/ops/random.js';
import { tidy } from '../../lib/scope.js';
import { fromArray, type Tensor } from '../../lib/tensor.js';
import { checkMemoryGuards, expectIdentical } from '../helpers.js';
import { denoiserAttention, fresh, group, linearNames, makeModel, randomFactors, scratch, textAttention, train } from './adapter_files.js';

checkMemoryGuards();

describe('weightsHash', () => {
  it('hashes the base weights only: adapters leave it alone, any weight change moves it, a merged adapter is refused', () => {
    const model = makeModel(1);
    const hash = model.weightsHash();
    expect(hash).toMatch(/^[0-9a-f]{64}$/);
    expect(weightsHash(model.dit)).toBe(hash);
    const weight = model.dit.stateDict()['blocks.2.mlp.fc1.weight']!;
    const saved = weight.toArray();
    const nudged = Float32Array.from(saved);
    nudged[7] = nudged[7]! + 2 ** -20;
    weight.copy_(fromArray(nudged, weight.shape));
    expect(model.weightsHash(), 'one element one ulp-ish away').not.toBe(hash);
    weight.copy_(fromArray(saved, weight.shape));
    expect(model.weightsHash(), 'no cache: the hash follows the weights').toBe(hash);
    const attached = attachLora(model.dit, { pattern: denoiserAttention, rank: 2, generator: new Generator(1) });
    train(attached, 2);
    expect(model.weightsHash(), 'attached adapters are not base weights').toBe(hash);
    mergeAdapters(model.dit);
    expect(() => model.weightsHash()).toThrow(/weightsHash: the adapter blocks\.0\.attn\.q\.lora is merged into its layer's weight.*unmerge it/);
    unmergeAdapters(model.dit);
    detachAdapters(model.dit);
    model.dispose();
  });

  it('is the same for a model loaded from an f32 and from a bf16 checkpoint holding the same values', () => {
    const model = makeModel(2);
    // Values that bf16 holds exactly, so both checkpoints hold equal numbers.
    for (const p of model.dit.parameters()) {
      const rounded = tidy(() => cast(cast(p.value, 'bf16'), 'f32'));
      p.value.copy_(rounded);
      rounded.dispose();
    }
    const hash = model.weightsHash();
    model.save(path.join(scratch, 'ckpt-f32'));
    model.save(path.join(scratch, 'ckpt-bf16'), { dtype: 'bf16' });
    const fromF32 = TextToImage.load(path.join(scratch, 'ckpt-f32'));
    const fromBf16 = TextToImage.load(path.join(scratch, 'ckpt-bf16'));
    expect(fromF32.weightsHash()).toBe(hash);
    expect(fromBf16.weightsHash()).toBe(hash);
    for (const m of [model, fromF32, fromBf16]) m.dispose();
  });
});

describe('adapter files: metadata written and checked', () => {
  it('round trip: groups, extra, base and factors come back; written atomically (no temporary left)', () => {
    const model = makeModel(3);
    const attached = attachLora(model.dit, { pattern: denoiserAttention, rank: 2, scale: 0.75, generator: new Generator(3) });
    train(attached, 4);
    attachLora(model.dit, { pattern: textAttention, rank: 3, scale: 0.5, generator: new Generator(4) });
    const easy = describeAdapters(model.dit, { name: 'easy', pattern: denoiserAttention });
    const text = describeAdapters(model.dit, { name: 'text', pattern: textAttention, timesteps: [900, 1000] });
    expect(easy).toEqual({ name: 'easy', kind: 'lora', rank: 2, scale: 0.75, pattern: denoiserAttention.source });
    expect(text).toEqual({ name: 'text', kind: 'lora', rank: 3, scale: 0.5, pattern: textAttention.source, timesteps: [900, 1000] });
    const tensors = { ...adapterTensors(model.dit, denoiserAttention, 'easy'), ...adapterTensors(model.dit, textAttention, 'text') };
    expect(Object.keys(tensors)).toContain('easy/blocks.3.cross.v.lora.up');
    expect(Object.keys(tensors)).toContain('text/text.blocks.1.attn.out.lora.down');
    expect(Object.keys(adapterTensors(model.dit, /^text\./))).toContain('text.blocks.0.attn.q.lora.down');
    const dir = path.join(scratch, 'roundtrip');
    const file = path.join(dir, 'stages.safetensors');
    saveAdapterFile(file, tensors, { base: model.weightsHash(), groups: [easy, text], extra: { stage: 'hard', run: 'r1' } });
    expect(readdirSync(dir)).toEqual(['stages.safetensors']);
    const { metadata, tensors: raw } = loadSafetensors(file);
    for (const t of Object.values(raw)) t.dispose();
    expect(metadata.format).toBe(adapterFileFormat);
    expect(metadata.version).toBe('1');
    expect(JSON.parse(metadata[adapterMetadataKey]!)).toMatchObject({ base: model.weightsHash(), groups: [easy, text], extra: { stage: 'hard', run: 'r1' } });

    const read = readAdapterFile(file);
    expect(read.base).toBe(model.weightsHash());
    expect(read.legacy).toBe(false);
    expect(read.groups).toEqual([easy, text]);
    expect(read.extra).toEqual({ stage: 'hard', run: 'r1' });
    expect(Object.keys(read.tensors).sort()).toEqual(Object.keys(tensors).sort());
    for (const [key, t] of Object.entries(tensors)) expectIdentical(read.tensors[key]!.toArray(), t.toArray(), key);
    expect([...read.factors.get('text')!.keys()].sort()).toEqual(linearNames(model, textAttention).sort());
    read.dispose();
    model.dispose();
  });

  it('a file without metadata (what adapterStateDict wrote) reads as one group named lora at scale 1, and converts in one line', () => {
    const model = makeModel(4);
    train(attachLora(model.dit, { pattern: /cross\.(q|v)$/, rank: 2, generator: new Generator(5) }), 6);
    const old = fresh('legacy');
    saveSafetensors(old, adapterStateDict(model.dit));
    const read = readAdapterFile(old);
    expect(read.legacy).toBe(true);
    expect(read.base).toBeUndefined();
    expect(read.groups).toHaveLength(1);
    expect(read.groups[0]).toMatchObject({ name: 'lora', kind: 'lora', rank: 2, scale: 1 });
    const layers = linearNames(model, /cross\.(q|v)$/);
    expect([...read.factors.get('lora')!.keys()].sort()).toEqual(layers.sort());
    for (const layer of layers) expect(new RegExp(read.groups[0]!.pattern).test(layer)).toBe(true);
    expect(new RegExp(read.groups[0]!.pattern).test('blocks.0.cross.k')).toBe(false);
    // The conversion the module documents:
    const converted = fresh('converted');
    saveAdapterFile(converted, read.tensors, { base: model.weightsHash(), groups: [...read.groups] });
    const again = readAdapterFile(converted);
    expect(again.base).toBe(model.weightsHash());
    expect(again.groups).toEqual(read.groups);
    for (const [key, t] of Object.entries(read.tensors)) expectIdentical(again.tensors[key]!.toArray(), t.toArray(), key);
    for (const f of [read, again]) f.dispose();
    model.dispose();
  });

  it('refuses what does not hold together, naming the file, the field, what was expected and what was there', () => {
    const model = makeModel(5);
    const base = model.weightsHash();
    const good = group('easy', /^blocks\.0\.attn\.(q|v)$/, 2);
    const factors = () => randomFactors(model, /^blocks\.0\.attn\.(q|v)$/, 'easy', 2, 7);
    /** Writes raw safetensors with `meta` as the adapter JSON (or raw metadata) and expects readAdapterFile to fail with `message`. */
    const expectRefused = (label: string, message: RegExp, edit: { meta?: Record<string, unknown>; metadata?: Record<string, string>; tensors?: (t: Record<string, Tensor>) => void }) => {
      const tensors: Record<string, Tensor> = factors();
      edit.tensors?.(tensors);
      const file = fresh('bad');
      const metadata = edit.metadata ?? { format: adapterFileFormat, version: '1', [adapterMetadataKey]: JSON.stringify({ base, groups: [good], ...edit.meta }) };
      saveSafetensors(file, tensors, { metadata });
      expect(() => readAdapterFile(file), label).toThrow(new RegExp(`adapter file ${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: ${message.source}`));
      if (edit.metadata === undefined && edit.meta !== undefined) {
        const meta = { base, groups: [good], ...edit.meta } as never;
        expect(() => saveAdapterFile(fresh('refused'), tensors, meta), `${label} (saveAdapterFile)`).toThrow(new RegExp(`saveAdapterFile: .*: ${message.source}`));
      }
      for (const t of Object.values(tensors)) t.dispose();
    };
    expectRefused('format', /__metadata__\.format must be one of "realtune-adapters", got "pt"/, { metadata: { format: 'pt', version: '1', [adapterMetadataKey]: '{}' } });
    expectRefused('version', /__metadata__\.version must be "1" \(the version this realtune reads\), got "7"/, { metadata: { format: adapterFileFormat, version: '7', [adapterMetadataKey]: '{}' } });
    expectRefused('json', /__metadata__\.realtune\.adapters is not valid JSON/, { metadata: { format: adapterFileFormat, version: '1', [adapterMetadataKey]: '{"base": ' } });
    expectRefused('base', /realtune\.adapters\.base must be a sha256 in hex .*, got "abc"/, { meta: { base: 'abc' } });
    expectRefused('rank', /realtune\.adapters\.groups\[0\]\.rank must be an integer >= 1, got 0/, { meta: { groups: [{ ...good, rank: 0 }] } });
    expectRefused('kind', /realtune\.adapters\.groups\[0\]\.kind must be one of "lora", "lidb", got "dora"/, { meta: { groups: [{ ...good, kind: 'dora' }] } });
    expectRefused('scale', /realtune\.adapters\.groups\[0\]\.scale must be a finite number, got "1"/, { meta: { groups: [{ ...good, scale: '1' }] } });
    expectRefused('pattern', /realtune\.adapters\.groups\[0\]\.pattern must be a regular expression .*got "\(unclosed"/, { meta: { groups: [{ ...good, pattern: '(unclosed' }] } });
    expectRefused('window', /realtune\.adapters\.groups\[0\]\.timesteps must be a window \[lo, hi\] with lo <= hi, got \[1000,900\]/, { meta: { groups: [{ ...good, timesteps: [1000, 900] }] } });
    expectRefused('blocks', /realtune\.adapters\.groups\[0\]\.blocks must be one of "all", "last-half", got "first-half"/, { meta: { groups: [{ ...good, blocks: 'first-half' }] } });
    expectRefused('unknown field', /realtune\.adapters\.groups\[0\]\.alpha must be absent/, { meta: { groups: [{ ...good, alpha: 16 }] } });
    expectRefused('lidb seed', /realtune\.adapters\.groups\[0\]\.lidbSeed must be an integer >= 0 \(a LiDB group regenerates its frozen bases from it\), got nothing/, { meta: { groups: [{ ...good, kind: 'lidb', rank: 1 }] } });
    expectRefused('duplicate', /realtune\.adapters\.groups must be groups with different names, got "two groups named easy"/, { meta: { groups: [good, good] } });
    expectRefused('undeclared group', /tensor hard\/blocks\.0\.attn\.q\.lora\.down belongs to group hard, which the metadata does not declare \(groups: easy\)/, {
      meta: {},
      tensors: (t) => {
        t['hard/blocks.0.attn.q.lora.down'] = t['easy/blocks.0.attn.q.lora.down']!.clone();
      },
    });
    expectRefused('rank vs shape', /easy\/blocks\.0\.attn\.q\.lora\.down has shape \[16, 2\], expected \[in, 3\] \(group easy has rank 3\)/, { meta: { groups: [{ ...good, rank: 3 }] } });
    expectRefused('missing up', /easy\/blocks\.0\.attn\.v\.lora\.up is missing \(group easy has easy\/blocks\.0\.attn\.v\.lora\.down\)/, {
      meta: {},
      tensors: (t) => {
        t['easy/blocks.0.attn.v.lora.up']!.dispose();
        delete t['easy/blocks.0.attn.v.lora.up'];
      },
    });
    expectRefused('pattern vs layer', /group easy holds layer blocks\.0\.attn\.v, which its pattern \/\^blocks\\\.0\\\.attn\\\.q\$\/ does not match/, { meta: { groups: [{ ...good, pattern: '^blocks\\.0\\.attn\\.q$' }] } });
    expectRefused('not a factor', /tensor easy\/blocks\.0\.attn\.q\.weight is not named <group>\/<layer>\.lora\.down\|up/, {
      meta: {},
      tensors: (t) => {
        t['easy/blocks.0.attn.q.weight'] = t['easy/blocks.0.attn.q.lora.down']!.clone();
      },
    });
    expectRefused('non-finite', /easy\/blocks\.0\.attn\.q\.lora\.up holds 1 non-finite value \(NaN or infinite\) of 32; pass allowNonFinite/, {
      meta: {},
      tensors: (t) => {
        const values = t['easy/blocks.0.attn.q.lora.up']!.toArray();
        values[3] = Number.NaN;
        const poisoned = fromArray(values, [2, 16]);
        t['easy/blocks.0.attn.q.lora.up']!.copy_(poisoned as never);
        poisoned.dispose();
      },
    });
    expectRefused('legacy with a stray key', /tensor blocks\.0\.attn\.q\.weight is not a LoRA factor: a file without realtune adapter metadata holds <layer>\.lora\.down and <layer>\.lora\.up only/, {
      metadata: {},
      tensors: (t) => {
        t['blocks.0.attn.q.weight'] = t['easy/blocks.0.attn.q.lora.down']!.clone();
      },
    });
    expect(() => readAdapterFile(path.join(scratch, 'absent.safetensors'))).toThrow(/lora: file .*absent\.safetensors does not exist/);
    // Nothing is written when the checks fail.
    const refused = path.join(scratch, 'never.safetensors');
    const t = factors();
    expect(() => saveAdapterFile(refused, t, { base, groups: [{ ...good, rank: 5 }] })).toThrow(/rank 5/);
    expect(existsSync(refused)).toBe(false);
    for (const x of Object.values(t)) x.dispose();
    model.dispose();
  });
});
