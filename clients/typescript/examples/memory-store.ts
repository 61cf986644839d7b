// The provider chain of the source document, in a memory store like sf's: the sm-gossip
// daemon first (lessons from every trusted host), this process's own lessons when the
// daemon does not answer (local-only). Recall is formatted for a system prompt within a
// token budget, newest trusted lessons first, each labelled with its author.
// Type-checked by the tests (tsconfig.examples.json); see README.md.
import { connect, promptBlock, type ConnectOptions, type PromptMemory } from "sm-gossip-client";

export interface Lesson {
  text: string;
  category: "anti-pattern" | "learning" | "contract";
  subject?: string;
}

export class MemoryStore {
  private readonly gossip;
  private readonly local: PromptMemory[] = []; // the local-only provider: this process's lessons

  constructor(options: ConnectOptions = {}) {
    // $GOSSIP_HOME or the platform's data dir, as the `gossip` CLI; reads wait 200 ms at most.
    this.gossip = connect({ queueFile: `${process.env.HOME}/.sf/gossip-queue.json`, ...options });
  }

  /** Keep a lesson here, and share it: sent now, or queued until the daemon is back. */
  async remember(lesson: Lesson): Promise<void> {
    this.local.push({ ...lesson, ts: Date.now(), trusted: true, author: "local",
                      author_name: "this host (local only)" });
    await this.gossip.remember(lesson.text, { category: lesson.category, subject: lesson.subject });
  }

  /** The memories block of a system prompt for `task`: never throws, never waits long. */
  async systemPrompt(task: string, maxTokens = 400): Promise<string> {
    const shared = await this.gossip.recall(task, { limit: 50 });
    if (!shared.degraded) return promptBlock(shared.memories, { maxTokens });
    return promptBlock(this.local, { maxTokens }); // degraded: proceed with what we have
  }

  /** Whether to call a provider at all: `unknown` (nobody said) is the caller's choice. */
  async mayCall(provider: string): Promise<boolean> {
    const breaker = await this.gossip.breaker(provider);
    return breaker.state !== "open";
  }

  close(): void {
    this.gossip.close();
  }
}
