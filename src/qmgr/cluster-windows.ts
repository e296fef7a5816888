/**
 * @module qmgr/cluster-windows
 * Per-destination windows that hold across every node sharing a queue. qmgr defines the port
 * (DestinationSlots: "give me one of `limit` slots of this destination, cluster-wide"); the
 * shared queue's backend implements it (queue/postgres/slots.ts: advisory locks) and main.ts
 * passes it in. Without one, qmgr uses the local DestinationWindows alone (the embedded store:
 * one node, so local is cluster-wide).
 *
 * A delivery first takes a slot of the local window (FIFO among this node's waiters, and it
 * bounds how many of them poll the cluster), then a cluster slot; it releases both when done.
 * So the local count never exceeds the limit and neither does the cluster's.
 *
 * Failure: a slot source that throws (closed at shutdown) gives the local slot back and rethrows;
 * the runner turns that into a deferral of the group.
 */
import { DestinationWindows } from './destinations.js';

/** qmgr's port for cluster-wide concurrency: resolves with a release function once a slot is ours. */
export interface DestinationSlots {
  acquire(destination: string, limit: number): Promise<() => void>;
}

/** What the runner needs of a window implementation, local or cluster-wide. */
export interface Windows {
  acquire(destination: string, limit?: number): Promise<() => void>;
  waitingFor(destination: string): number;
  /** This node's deliveries in progress to `destination`. */
  activeFor(destination: string): number;
}

export class ClusterWindows implements Windows {
  private readonly local: DestinationWindows;

  constructor(private readonly defaultLimit: number, private readonly slots: DestinationSlots) {
    this.local = new DestinationWindows(defaultLimit);
  }

  async acquire(destination: string, limit: number = this.defaultLimit): Promise<() => void> {
    const releaseLocal = await this.local.acquire(destination, limit);
    try {
      const releaseCluster = await this.slots.acquire(destination, Math.max(1, limit));
      return () => {
        releaseCluster();
        releaseLocal();
      };
    } catch (err) {
      releaseLocal();
      throw err;
    }
  }

  waitingFor(destination: string): number {
    return this.local.waitingFor(destination);
  }

  activeFor(destination: string): number {
    return this.local.activeFor(destination);
  }
}
