// npm run bench -- kernels [--json FILE]: the headline kernels (issue "four headline kernels"):
// fused attention vs the unfused PyTorch reference, the DPO and channel-statistics losses against
// copy bandwidth, and the rank-1 LoRA linear against the plain linear.
import * as attention from './kernels_attention.js';
import * as losses from './kernels_losses.js';

export async function run(args: string[]): Promise<{ attention: unknown; losses: unknown }> {
  console.log('\n--- attention ---');
  const attentionResult = await attention.run(args.filter((a, i) => a !== '--json' && args[i - 1] !== '--json'));
  console.log('\n--- losses and LoRA linear ---');
  const lossesResult = await losses.run(args.filter((a, i) => a !== '--json' && args[i - 1] !== '--json'));
  return { attention: attentionResult, losses: lossesResult };
}
