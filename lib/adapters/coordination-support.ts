/**
 * What both coordination adapters (lib/adapters/zookeeper, lib/adapters/memory) share:
 * - the logger they report through (a service passes its own: mixins/zookeeper.mixin.ts);
 * - the connection state and its fan-out to state-change listeners (asynchronous, never inside the
 *   call that changed the state);
 * - a candidacy's leadership flag and the chain that runs its handlers (elected/revoked in order,
 *   never overlapping);
 * - how a failing listener or handler is reported: logged as an error, and it goes no further.
 */
import type { Candidacy, ConnectionState, Coordination, LeadershipHandlers, StateChange } from "../core/coordination";

export interface CoordinationLogger {
	debug(...args: unknown[]): void;
	info(...args: unknown[]): void;
	warn(...args: unknown[]): void;
	error(...args: unknown[]): void;
}

/** The logger of a coordination built without one (tests): reports go nowhere. */
export const silentLogger: CoordinationLogger = { debug() {}, info() {}, warn() {}, error() {} };

/** Builds one coordination session for a service, reporting through that service's logger. */
export type CoordinationFactory = (logger: CoordinationLogger) => Coordination;

/** Call a listener; a failure is logged (`<what> failed`) and goes no further. */
export function deliver(log: CoordinationLogger, what: string, fn: () => void): void {
	try {
		fn();
	} catch (err) {
		log.error(`${what} failed`, err);
	}
}

/** The connection state of one session and the listeners of its changes. */
export class ConnectionStates {
	/** The current state. Set it directly only to enter a state that is announced right after. */
	current: ConnectionState = "closed";
	private readonly listeners = new Set<(change: StateChange) => void>();

	constructor(private readonly log: CoordinationLogger) {}

	listen(listener: (change: StateChange) => void): () => void {
		this.listeners.add(listener);
		return () => {
			this.listeners.delete(listener);
		};
	}

	/**
	 * Enter `state` and tell the listeners registered now, asynchronously. Nothing happens when the
	 * state does not change, unless `force` (a "connected" of a new session follows "connected").
	 */
	set(state: ConnectionState, newSession: boolean, force = false): void {
		if (this.current === state && !force) return;
		this.current = state;
		const change: StateChange = { state, newSession };
		const listeners = [...this.listeners];
		setImmediate(() => {
			for (const l of listeners) deliver(this.log, "coordination state listener", () => l(change));
		});
	}
}

/**
 * A candidacy's leadership. Every change runs `elected` or `revoked` asynchronously (never inside the
 * call that changed it), in the order of the changes, one at a time; a failing handler is logged and
 * does not stop the ones after it.
 */
export class Leadership {
	private leader = false;
	private chain: Promise<void> = Promise.resolve();

	constructor(
		private readonly handlers: LeadershipHandlers,
		private readonly log: CoordinationLogger,
	) {}

	isLeader(): boolean {
		return this.leader;
	}

	/** Gain or lose leadership; true when that changed it (and a handler was queued). */
	set(leader: boolean): boolean {
		if (this.leader === leader) return false;
		this.leader = leader;
		const handlers = this.handlers;
		this.chain = this.chain
			.then(() => new Promise<void>((resolve) => setImmediate(resolve)))
			.then(() => (leader ? handlers.elected() : handlers.revoked()))
			.catch((err: unknown) => this.log.error(`leadership handler (${leader ? "elected" : "revoked"}) failed`, err));
		return true;
	}

	/** Resolves when every handler queued so far has run. */
	settled(): Promise<void> {
		return this.chain;
	}
}

/**
 * What both adapters' candidacies share: the leadership handler chain and resigning once. A subclass
 * says how it leaves the election (`leave`, run by the first resign() only).
 */
export abstract class CandidacyBase implements Candidacy {
	/** Resigned (or its coordination closed): it never enters the election again. */
	resigned = false;
	protected readonly leadership: Leadership;

	constructor(
		readonly candidateId: string,
		handlers: LeadershipHandlers,
		log: CoordinationLogger,
	) {
		this.leadership = new Leadership(handlers, log);
	}

	isLeader(): boolean {
		return this.leadership.isLeader();
	}

	async resign(): Promise<void> {
		if (this.resigned) return;
		this.resigned = true;
		await this.leave();
		await this.leadership.settled();
	}

	/** Leave the election: drop its node, lose leadership. */
	protected abstract leave(): Promise<void>;
}
