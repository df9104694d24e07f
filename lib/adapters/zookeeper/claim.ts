/**
 * Per-fire claims on ZooKeeper (a lock without waiting): an ephemeral sequential
 * `<root>/claims/<job>/<scheduledAt>/lock-<guid>-<seq>`, data = owner; the lowest holds, and a claimer
 * that is not lowest deletes its node and gets null. The guid makes the node "protected": a create
 * whose answer was lost with the connection is found by it and deleted. A claim vanishes with its
 * session: an expiry drops every claim held.
 *
 * One holder is not a live owner although the server still has its node: our own previous session.
 * A claim made just before the connection dropped can be committed with its answer lost; the
 * session then expires on our side (we open a new one), but the server keeps the node until the
 * session expires there too (after a server restart: a whole session timeout after the restart).
 * A claimer queued behind such a node waits for it to go instead of giving up at once.
 */
import * as zookeeper from "node-zookeeper-client";
import type { Client } from "node-zookeeper-client";
import type { Claim } from "../../core/coordination";
import { bySequence, parseClaimName } from "../../core/zkpaths";
import { basename, fail, guid, isCode } from "./requests";
import type { SessionParticipant, ZkSession } from "./session";

const { CreateMode, Exception } = zookeeper;

/**
 * How much longer than a session timeout a claimer waits for our previous session's node: the
 * server expires sessions on its ticks, a little after the timeout.
 */
const STALE_MARGIN_MS = 1000;

/** The claims held through one session. */
export class Claims implements SessionParticipant {
	private readonly held = new Set<ZkClaim>();

	constructor(private readonly session: ZkSession) {}

	/**
	 * Not re-entrant: a second claim of the same fire (even by the same owner) returns null while the
	 * first is held.
	 *
	 * Two round trips in the usual case: one multi-op creates the fire's folder <job>/<at> and the
	 * ephemeral sequential lock node under it, then getChildren checks that ours is the lowest. The
	 * job's folder stays between fires (only <at> is tidied away on release).
	 */
	async claim(jobId: string, scheduledAt: number, owner: string): Promise<Claim | null> {
		const { session } = this;
		const { zk, paths } = session;
		const client = session.live();
		const gen = session.generation;
		const dir = paths.claim(jobId, scheduledAt);
		const data = Buffer.from(owner);
		try {
			const g = guid();
			const prefix = paths.claimPrefix(jobId, scheduledAt, g);
			let created: string | null = null;
			for (let attempt = 0; attempt < 5 && created === null; attempt++) {
				try {
					const results = await zk.call<{ path?: string }[]>(client, `claim ${dir}`, (cb) =>
						client.transaction().create(dir, CreateMode.PERSISTENT).create(prefix, data, CreateMode.EPHEMERAL_SEQUENTIAL).commit(cb),
					);
					created = results[1]?.path ?? null;
					if (created === null) throw new Error(`the claim under ${dir} answered no path`);
				} catch (err) {
					if (isCode(err, Exception.NODE_EXISTS)) {
						// <at> exists: somebody else is claiming or holds this fire; queue behind them.
						try {
							created = await zk.call<string>(client, `create ${prefix}`, (cb) => client.create(prefix, data, CreateMode.EPHEMERAL_SEQUENTIAL, cb));
						} catch (e) {
							if (!isCode(e, Exception.NO_NODE)) {
								if (isCode(e, Exception.CONNECTION_LOSS)) this.cleanupProtected(dir, g, gen);
								throw e;
							}
							// <at> was tidied away meanwhile: try the multi-op again.
						}
						continue;
					}
					if (isCode(err, Exception.NO_NODE)) {
						// The job's folder (or the base path) is missing: the first claim of this job.
						await zk.mkdirp(client, paths.claimJob(jobId));
						continue;
					}
					if (isCode(err, Exception.CONNECTION_LOSS)) this.cleanupProtected(dir, g, gen);
					throw err;
				}
			}
			if (created === null) throw new Error(`could not create a claim node under ${dir}`);
			const name = basename(created);
			const deadline = Date.now() + client.getSessionTimeout() + STALE_MARGIN_MS;
			for (;;) {
				const nodes = (await zk.getChildren(client, dir)).filter((n) => parseClaimName(n) !== null).sort(bySequence);
				if (nodes[0] === name) break;
				// Queued behind our previous session's node: wait until the server expires it, then look
				// again (another live claimer may be next). Giving up here would answer "held by another
				// worker" for a fire nobody will run: the caller's second look (who holds it?) can come
				// just after that node went, and find nobody.
				if (!(await this.previousSessionGone(client, `${dir}/${nodes[0]}`, owner, deadline))) {
					await zk.remove(client, created);
					return null;
				}
			}
			if (gen !== session.generation) return null;
			const claim = new ZkClaim(this, jobId, scheduledAt, owner, created, gen);
			this.held.add(claim);
			return claim;
		} catch (err) {
			fail(err);
		}
	}

	/**
	 * Whether the claim node at `path` is gone, or was our own previous session's (same owner, another
	 * session) and went before `deadline`. False for any other holder: a live one.
	 */
	private async previousSessionGone(client: Client, path: string, owner: string, deadline: number): Promise<boolean> {
		const { zk } = this.session;
		let holder: { data: Buffer | null; stat: { ephemeralOwner: Buffer } };
		try {
			holder = await zk.getData(client, path);
		} catch (err) {
			if (isCode(err, Exception.NO_NODE)) return true; // went meanwhile: look again
			throw err;
		}
		if ((holder.data?.toString("utf8") ?? "") !== owner || holder.stat.ephemeralOwner.equals(client.getSessionId())) return false;
		const wait = deadline - Date.now();
		if (wait <= 0) return false;
		return new Promise<boolean>((resolve, reject) => {
			const timer = setTimeout(() => resolve(false), wait);
			const done = (gone: boolean) => {
				clearTimeout(timer);
				resolve(gone);
			};
			// Any event on the node (its deletion, in practice) means: look again.
			zk.watchNode(client, path, () => done(true)).then(
				(exists) => {
					if (!exists) done(true);
				},
				(err: unknown) => {
					clearTimeout(timer);
					reject(err instanceof Error ? err : new Error(String(err)));
				},
			);
		});
	}

	/** The owner of a live claim on (job, scheduled time), or null when nobody holds it. */
	async claimOwner(jobId: string, scheduledAt: number): Promise<string | null> {
		const { zk, paths } = this.session;
		const client = this.session.live();
		const dir = paths.claim(jobId, scheduledAt);
		try {
			for (let attempt = 0; attempt < 5; attempt++) {
				let nodes: string[];
				try {
					nodes = (await zk.getChildren(client, dir)).filter((n) => parseClaimName(n) !== null).sort(bySequence);
				} catch (err) {
					if (isCode(err, Exception.NO_NODE)) return null;
					throw err;
				}
				if (nodes.length === 0) return null;
				try {
					const { data } = await zk.getData(client, `${dir}/${nodes[0]}`);
					return data ? data.toString("utf8") : "";
				} catch (err) {
					if (!isCode(err, Exception.NO_NODE)) throw err;
				}
			}
			return null;
		} catch (err) {
			fail(err);
		}
	}

	/** @internal */
	async release(claim: ZkClaim): Promise<void> {
		this.held.delete(claim);
		const cur = this.session.currentClient();
		if (claim.gen !== this.session.generation || !cur) return; // the session (and the node) is gone
		const { client } = cur;
		const { zk, paths } = this.session;
		const dir = paths.claim(claim.jobId, claim.scheduledAt);
		try {
			// One round trip: the lock node and, when nobody else queues there, the fire's folder.
			try {
				await zk.call<unknown>(client, `release ${claim.path}`, (cb) => client.transaction().remove(claim.path, -1).remove(dir, -1).commit(cb));
			} catch (err) {
				if (!isCode(err, Exception.NOT_EMPTY) && !isCode(err, Exception.NO_NODE)) throw err;
				await zk.remove(client, claim.path); // others queue under <at>: leave it to the last one
			}
		} catch (err) {
			if (claim.gen !== this.session.generation) return;
			fail(err);
		}
	}

	expired(): void {
		this.dropAll();
	}

	closed(): void {
		this.dropAll();
	}

	/** The session (and with it every claim node) is gone. */
	private dropAll(): void {
		for (const c of this.held) c.dropped = true;
		this.held.clear();
	}

	/** Protected mode: a create whose answer was lost may have succeeded; find it by guid and delete it. */
	private cleanupProtected(dir: string, g: string, gen: number): void {
		const attempt = async () => {
			const cur = this.session.currentClient();
			if (!cur || cur.gen !== gen) return; // session gone: so is the node
			const names = await this.session.zk.getChildren(cur.client, dir);
			for (const n of names) if (parseClaimName(n)?.guid === g) await this.session.zk.remove(cur.client, `${dir}/${n}`);
		};
		attempt().catch((err) => this.session.log.debug(`claim cleanup under ${dir} failed`, err));
	}
}

class ZkClaim implements Claim {
	dropped = false;
	private released: Promise<void> | null = null;

	constructor(
		private readonly claims: Claims,
		readonly jobId: string,
		readonly scheduledAt: number,
		readonly owner: string,
		readonly path: string,
		readonly gen: number,
	) {}

	release(): Promise<void> {
		if (this.dropped) return Promise.resolve();
		if (!this.released) this.released = this.claims.release(this);
		return this.released;
	}
}
