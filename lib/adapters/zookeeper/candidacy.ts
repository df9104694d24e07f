/**
 * Manager election on ZooKeeper (Curator's LeaderLatch): every candidate creates an ephemeral
 * sequential `<root>/election/n_<guid>_<seq>`, data = candidate id; the lowest leads and every other
 * candidate watches only its predecessor (no herd effect). The guid makes the node "protected": a
 * create whose answer was lost with the connection is found again by it.
 *
 * Leadership is revoked as soon as the connection is suspended (kept node) or the session expires
 * (lost node: the new session re-enters the election before it is announced).
 */
import * as zookeeper from "node-zookeeper-client";
import type { Client } from "node-zookeeper-client";
import type { Candidacy, LeadershipHandlers } from "../../core/coordination";
import { bySequence, parseElectionName } from "../../core/zkpaths";
import { CandidacyBase } from "../coordination-support";
import { basename, fail, guid, isCode, zkCode } from "./requests";
import type { SessionParticipant, ZkSession } from "./session";

const { CreateMode, Exception } = zookeeper;

/** The candidacies entered through one session. */
export class Election implements SessionParticipant {
	private readonly candidacies = new Set<ZkCandidacy>();

	constructor(private readonly session: ZkSession) {}

	async campaign(candidateId: string, handlers: LeadershipHandlers): Promise<Candidacy> {
		const client = this.session.live();
		const candidacy = new ZkCandidacy(this, this.session, candidateId, handlers);
		this.candidacies.add(candidacy);
		try {
			await candidacy.enter(client, this.session.generation);
		} catch (err) {
			this.candidacies.delete(candidacy);
			fail(err);
		}
		candidacy.schedule();
		return candidacy;
	}

	/** The current leader's candidate id, or null. */
	async leader(): Promise<string | null> {
		const client = this.session.live();
		try {
			for (let attempt = 0; attempt < 5; attempt++) {
				const nodes = await this.nodes(client);
				if (nodes.length === 0) return null;
				try {
					const { data } = await this.session.zk.getData(client, this.session.paths.electionNode(nodes[0]));
					return data ? data.toString("utf8") : null;
				} catch (err) {
					if (!isCode(err, Exception.NO_NODE)) throw err;
				}
			}
			return null;
		} catch (err) {
			fail(err);
		}
	}

	async restore(client: Client, gen: number): Promise<void> {
		for (const c of this.candidacies) await c.enter(client, gen);
	}

	ready(): void {
		for (const c of this.candidacies) c.schedule();
	}

	suspended(): void {
		for (const c of this.candidacies) c.suspend();
	}

	expired(): void {
		for (const c of this.candidacies) c.lost();
	}

	closed(): void {
		for (const c of this.candidacies) c.shutdown();
		this.candidacies.clear();
	}

	/** @internal */
	forget(c: ZkCandidacy): void {
		this.candidacies.delete(c);
	}

	/** @internal Sorted election node names. */
	async nodes(client: Client): Promise<string[]> {
		const names = await this.session.zk.getChildren(client, this.session.paths.election);
		return names.filter((n) => parseElectionName(n) !== null).sort(bySequence);
	}

	/** @internal */
	createNode(client: Client, g: string, candidateId: string): Promise<string> {
		const prefix = this.session.paths.electionPrefix(g);
		return this.session.zk.call<string>(client, `create ${prefix}`, (cb) =>
			client.create(prefix, Buffer.from(candidateId), CreateMode.EPHEMERAL_SEQUENTIAL, cb),
		);
	}
}

class ZkCandidacy extends CandidacyBase {
	private readonly guid = guid();
	private nodePath: string | null = null;
	private gen = -1;
	private checking = false;
	private again = false;
	/** Stable function so the client deduplicates the watch. */
	private readonly onPredecessor = () => this.schedule();

	constructor(
		private readonly election: Election,
		private readonly session: ZkSession,
		candidateId: string,
		handlers: LeadershipHandlers,
	) {
		super(candidateId, handlers, session.log);
	}

	protected async leave(): Promise<void> {
		this.election.forget(this);
		this.setLeader(false);
		const path = this.nodePath;
		this.nodePath = null;
		const cur = this.session.currentClient();
		if (path && cur && cur.gen === this.gen) {
			try {
				await this.session.zk.remove(cur.client, path);
			} catch (err) {
				this.session.log.warn(`could not delete election node ${path} (it goes with the session)`, err);
			}
		}
	}

	/** @internal Create our election node in the (new) session. */
	async enter(client: Client, gen: number): Promise<void> {
		if (this.resigned) return;
		if (this.nodePath && this.gen === gen) return;
		try {
			this.nodePath = await this.election.createNode(client, this.guid, this.candidateId);
		} catch (err) {
			if (zkCode(err) !== Exception.CONNECTION_LOSS) throw err;
			// Protected mode: the node may exist although the answer was lost.
			const nodes = await this.election.nodes(client);
			const mine = nodes.find((n) => parseElectionName(n)?.guid === this.guid);
			if (!mine) throw err;
			this.nodePath = this.session.paths.electionNode(mine);
		}
		this.gen = gen;
	}

	/** @internal Re-check our position (serialised; coalesces bursts). */
	schedule(): void {
		if (this.checking) {
			this.again = true;
			return;
		}
		this.checking = true;
		void (async () => {
			try {
				do {
					this.again = false;
					await this.check();
				} while (this.again);
			} catch (err) {
				this.session.log.warn("election check failed", err);
			} finally {
				this.checking = false;
			}
		})();
	}

	private async check(): Promise<void> {
		if (this.resigned) return;
		const cur = this.session.currentClient();
		if (!cur || !this.session.isReady(cur.gen)) return; // re-checked when the session is ready again
		const { client, gen } = cur;
		if (!this.nodePath || this.gen !== gen) {
			await this.enter(client, gen);
		}
		const nodes = await this.election.nodes(client);
		if (!this.session.isReady(gen) || this.resigned) return;
		const name = basename(this.nodePath!);
		const idx = nodes.indexOf(name);
		if (idx < 0) {
			// Our node vanished within a live session (deleted by someone): enter again.
			this.session.log.warn(`election node ${name} disappeared: re-entering`);
			this.nodePath = null;
			this.setLeader(false);
			this.again = true;
			return;
		}
		if (idx === 0) {
			this.setLeader(true);
			return;
		}
		this.setLeader(false);
		// Watch only the predecessor; when it goes, check again.
		const exists = await this.session.zk.watchNode(client, this.session.paths.electionNode(nodes[idx - 1]), this.onPredecessor);
		if (!exists) this.again = true;
	}

	/** @internal Connection suspended: stop leading now, keep the node. */
	suspend(): void {
		this.setLeader(false);
	}

	/** @internal Session expired: the node is gone; re-entered by the new session. */
	lost(): void {
		this.nodePath = null;
		this.gen = -1;
		this.setLeader(false);
	}

	/** @internal Coordination closing. */
	shutdown(): void {
		this.resigned = true;
		this.nodePath = null;
		this.setLeader(false);
	}

	private setLeader(leader: boolean): void {
		if (this.leadership.set(leader)) this.session.log.info(`${this.candidateId}: leadership ${leader ? "acquired" : "revoked"}`);
	}
}
