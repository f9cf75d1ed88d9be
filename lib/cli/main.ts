// `npx realtune <command>`: each command is a module under lib/cli/ with a `run(args)` function.
import { info } from '../info.js';
import { isRankZero, rankLabel } from '../train/loop/dist.js';

interface Command {
  summary: string;
  run(args: string[]): Promise<void> | void;
}

const commands: Record<string, Command> = {
  info: {
    summary: 'what realtune found: version, devices, threads, cpu isa (--json for machines)',
    run(args) {
      const found = info();
      if (args.includes('--json')) {
        const { version, devices, threads, isa, addon } = found;
        console.log(JSON.stringify({ version, devices, threads, isa, addon }, null, 2));
        return;
      }
      console.log(`realtune ${found.version}  (addon ${found.addon})`);
      console.log(`cpu: ${found.threads} threads, ${found.isa} kernels`);
      for (const d of found.devices) {
        console.log(`  ${d.type.padEnd(9)} ${d.available ? 'available' : 'unavailable'}${d.name ? `  ${d.name}` : ''}${d.reason ? `  (${d.reason})` : ''}`);
      }
    },
  },
  'train-base': {
    summary: 'base training of the text-to-image model (--data DIR | --manifest FILE | --figures N | --fresh; --help)',
    run: async (args) => (await import('./train-base.js')).run(args),
  },
  'train-dpo': {
    summary: 'Diffusion-DPO of LoRA adapters on preference pairs (--pairs FILE | --figures N; --help)',
    run: async (args) => (await import('./train-dpo.js')).run(args),
  },
  curriculum: {
    summary: "HG-DPO's easy/normal/hard curriculum: pools, SDRecon, three DPO stages, reports (--table: the ablations; --help)",
    run: async (args) => (await import('./curriculum.js')).run(args),
  },
  personalize: {
    summary: 'HyperDreamBooth: an identity from one image (--ref IMAGE --out id.safetensors); preopt; train-hypernet (--help)',
    run: async (args) => (await import('./personalize.js')).run(args),
  },
  dsd: {
    summary: 'Diffusion Self-Distillation: pairs (self-generated, curated); train (the DSD adapter) (--help)',
    run: async (args) => (await import('./dsd.js')).run(args),
  },
  sample: {
    summary: 'images from a checkpoint with guidance: --ckpt DIR --prompt "..." --out grid.png; --dsd F --ref IMAGE (--help)',
    run: async (args) => (await import('./sample.js')).run(args),
  },
  'train-evaluator': {
    summary: 'trains an evaluator on procedural figures: --kind attributes|identity|scorer (--help)',
    run: async (args) => (await import('./train-evaluator.js')).run(args),
  },
  eval: {
    summary: 'measures a checkpoint on held-out prompts: FD, adherence, scorer, hue, sharpness (--help)',
    run: async (args) => (await import('./eval.js')).run(args),
  },
  demo: {
    summary: 'short training from the shipped model on procedural figures + a sample grid in ./realtune-demo',
    run: async (args) => (await import('./demo.js')).run(args),
  },
};

function usage(): string {
  const lines = Object.entries(commands).map(([name, c]) => `  ${name.padEnd(16)}  ${c.summary}`);
  return ['usage: realtune <command> [options]', '', 'commands:', ...lines].join('\n');
}

export async function main(argv: string[]): Promise<void> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    console.log(usage());
    return;
  }
  const command = commands[name];
  if (!command) {
    console.error(`realtune: unknown command ${JSON.stringify(name)}\n\n${usage()}`);
    process.exitCode = 2;
    return;
  }
  try {
    // Under mpirun every rank runs the command; rank 0 prints its output, the others only errors.
    if (!isRankZero()) console.log = () => {};
    await command.run(rest);
  } catch (err) {
    const rank = rankLabel();
    console.error(`realtune ${name}${rank === '' ? '' : ` (${rank})`}: ${(err as Error).message}`);
    process.exitCode = 1;
    // The launcher ends the whole job when the first rank exits with an error; a moment's wait
    // lets the other ranks, which usually fail the same check at start, print their error too.
    if (rank !== '') await new Promise((resolve) => setTimeout(resolve, 500));
  }
}
