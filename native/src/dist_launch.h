// dist_launch.h — hqlora-train as the launcher of a world on one host: `--nproc N`, or run.json hardware.gpus > 1.
//
// What torchrun does for one node, without Python: the launcher picks a free MASTER_PORT on 127.0.0.1 (or keeps
// the MASTER_PORT of its environment) and starts N copies of this executable with the launch environment of dist.h
// (RANK = LOCAL_RANK = k, WORLD_SIZE = LOCAL_WORLD_SIZE = N, MASTER_ADDR, MASTER_PORT), the same arguments less
// --nproc, and the same CUDA_VISIBLE_DEVICES (rank k trains on visible device k; data_parallel.h). Then it
// supervises them:
//   stdout     rank 0's lines are passed through unchanged (the run's events; rank 0 alone writes events.jsonl).
//              The other ranks print only their error events; those go to stderr, prefixed "[rank k] ".
//   stderr     rank 0's is the launcher's own; the other ranks' lines are prefixed "[rank k] ".
//   signals    SIGINT, SIGTERM and SIGUSR1 are passed to every rank (each rank also honours them itself, so a signal
//              sent to the whole process group arrives twice, which is harmless: the requests are flags).
//   failures   the first rank that fails (an error exit, a signal: SIGKILL, the OOM killer) is the one named. The
//              ranks' own control channel (dist.h) stops the others within seconds; any rank still alive
//              `grace_s` after the first failure is killed (SIGKILL). When rank 0 printed no error event (it was
//              the one killed), the launcher prints one, E_DIST naming the rank, its pid and how it ended, and
//              appends it to <run>/events.jsonl when that exists.
//   ranks      die with the launcher (PR_SET_PDEATHSIG), so killing only the launcher leaves no rank behind.
// Exit code: 1 when a rank failed, else rank 0's (0 done, 3 stopped, 4 non-finite).
#pragma once
#include <string>
#include <vector>

#include "events.h"

namespace hq {

struct LocalLaunch {
    int nproc = 1;                   // ranks to start (>= 2)
    std::vector<std::string> args;   // the ranks' arguments (after the executable's path), without --nproc
    std::string events_log;          // <run>/events.jsonl, for the launcher's own error event ("" = stdout only)
    double grace_s = 15.0;           // seconds the other ranks get to end by themselves after a failure
};

// Starts and supervises the ranks (see the top of this file); returns the exit code. `events` is stdout's sink.
int launch_local_world(const LocalLaunch& spec, EventSink& events);

// Ranks per host of the running world: LOCAL_WORLD_SIZE (torchrun, and the launcher above), else
// SLURM_NTASKS_PER_NODE when it is a plain number, else 1. The trainer divides the cores among them.
int dist_local_world();

}  // namespace hq
