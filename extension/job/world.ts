// world.ts — the ranks of a one-host data-parallel run, from hardware.gpus and hardware.gpu_ids (and the
// `hqlora run --gpus N` override). One answer for the launchers (CLI, Start Run, sweeps) and the language server.
//
// hqlora-train starts the ranks itself when run.json has hardware.gpus > 1 (native/src/dist_launch.h); every rank
// sees the same CUDA_VISIBLE_DEVICES and rank k trains on visible device k. So the launcher only has to write the
// count and the devices:
//   gpus: [2, 3]             → 2 ranks on GPUs 2 and 3
//   gpus: 2                  → 2 ranks on the first two visible GPUs
//   gpus: 2, gpu_ids: [4, 5] → 2 ranks on GPUs 4 and 5
//   gpus: 1, gpu_ids: [4, 5] → 1 rank (on GPU 4; GPU 5 stays visible to it, as before data parallel)
import type { Hardware } from '../../schemas/generated/run-config';

export interface WorldPlan {
  /** Ranks hqlora-train starts (run.json hardware.gpus). */
  ranks: number;
  /** GPU ordinals (as nvidia-smi numbers them) made visible to the ranks, rank k on the k-th; null: no restriction. */
  devices: number[] | null;
}

export interface WorldProblem {
  /** The config key at fault. */
  path: ['hardware', 'gpus' | 'gpu_ids'];
  message: string;
  hint: string;
}

type HardwareLike = Pick<Hardware, 'gpus' | 'gpu_ids'> | undefined;

/** The world a config asks for; `override` is `hqlora run --gpus N`. */
export function worldPlan(hw: HardwareLike, override?: number): WorldPlan | WorldProblem {
  const gpus = hw?.gpus ?? 1;
  const ids = hw?.gpu_ids ?? null;
  if (override !== undefined && (!Number.isInteger(override) || override < 1 || override > 256)) {
    return { path: ['hardware', 'gpus'], message: `--gpus must be a whole number from 1 to 256, got ${override}`, hint: 'pass --gpus 2, for example' };
  }
  if (Array.isArray(gpus)) {
    if (ids !== null && ids.length > 0) {
      return {
        path: ['hardware', 'gpu_ids'],
        message: `hardware.gpus lists the GPUs (${gpus.join(', ')}) and hardware.gpu_ids is set too`,
        hint: 'keep one of them: drop hardware.gpu_ids, or give hardware.gpus as a count',
      };
    }
    const n = override ?? gpus.length;
    if (n > gpus.length) {
      return {
        path: ['hardware', 'gpus'], message: `--gpus ${n} asks for more ranks than the ${gpus.length} GPU(s) hardware.gpus lists`,
        hint: `pass --gpus ${gpus.length} or fewer, or list more GPUs in hardware.gpus`,
      };
    }
    return { ranks: n, devices: gpus.slice(0, n) };
  }
  const n = override ?? gpus;
  if (ids !== null && ids.length > 0) {
    if (n > ids.length) {
      return {
        path: ['hardware', 'gpus'], message: `${override !== undefined ? `--gpus ${n}` : `hardware.gpus ${n}`} asks for more ranks than the ${ids.length} GPU(s) of hardware.gpu_ids`,
        hint: `lower the count to ${ids.length}, or list more GPUs in hardware.gpu_ids`,
      };
    }
    return { ranks: n, devices: n === 1 ? ids : ids.slice(0, n) };
  }
  return { ranks: n, devices: null };
}

export function isWorldProblem(p: WorldPlan | WorldProblem): p is WorldProblem {
  return 'message' in p;
}
