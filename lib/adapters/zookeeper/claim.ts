/**
 * Per-fire claims on ZooKeeper (a lock without waiting): an ephemeral sequential
 * `<root>/claims/<job>/<scheduledAt>/lock-<guid>-<seq>`, data = owner; the lowest holds, and a claimer
 * that is not lowest deletes its node and gets null. The guid makes the node "protected": a create
 * whose answer was lost with the connection is found by it and deleted. A claim vanishes with its
 * session: an expiry drops every claim held.
 */
import * as zookeeper from "node-zookeeper-client";
import type { Claim } from "../../core/coordination";
import { bySequence, parseClaimName } from "../../core/zkpaths";
import { basename, fail, guid, isCode } from "./requests";
import type { SessionParticipant, ZkSession } from "./session";

const { CreateMode, Exception } = zookeeper;

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
			const nodes = (await zk.getChildren(client, dir)).filter((n) => parseClaimName(n) !== null).sort(bySequence);
			if (nodes[0] !== name) {
				await zk.remove(client, created);
				return null;
			}
			if (gen !== session.generation) return null;
			const claim = new ZkClaim(this, jobId, scheduledAt, owner, created, gen);
			this.held.add(claim);
			return claim;
		} catch (err) {
			fail(err);
		}
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
