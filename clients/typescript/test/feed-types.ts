// Type-checked, never run (tsconfig.examples.json): FeedEvent names every event type of
// docs/api.md's change feed, so an exhaustive switch over it compiles, and each type's
// data is typed (no `any`).
import type { FeedEvent } from "sm-gossip-client";

export function describe(event: FeedEvent): string {
  switch (event.type) {
    case "record": return `${event.data.kind} by ${event.data.author}`;
    case "breaker": return `${event.data.name} ${event.data.state}`;
    case "peer": return `${event.data.change} ${event.data.peer.address}`;
    case "trust": return `+${event.data.added.length} -${event.data.removed.length}`;
    case "lost": return `lost ${event.data.count ?? "some"}`;
    case "cutoff": return `cut off: ${event.data.reason}`;
    default: {
      const unknown: never = event;
      return unknown;
    }
  }
}
