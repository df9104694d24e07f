/** Shared data shapes. Plain types only: no I/O here. */
import type { JobSettingsOf, JobViewOf } from "./job-schema";
import type { Role } from "./roles";

export type JobType = "command" | "script" | "binary";
export type JobStatus = "scheduled" | "finished" | "error";
export type ConcurrencyPolicy = "allow" | "forbid" | "replace";
export type MisfirePolicy = "run_once" | "run_all" | "skip";
export type RunStatus = "running" | "succeeded" | "failed" | "timed_out" | "skipped" | "missed";
export type RunTrigger = "schedule" | "manual" | "retry" | "catchup";

/** What a job runs and when: the fields a user sets (POST /jobs, PATCH /jobs/{id}). Declared in job-schema.ts. */
export type JobSettings = JobSettingsOf;

/**
 * A job as the API answers it (the settings and id, status, digest, size, owner, worker, nextRunAt,
 * lastRun, createdAt, updatedAt). Declared in job-schema.ts.
 */
export type Job = JobViewOf;

export interface RunSummary {
	id: string;
	status: RunStatus;
	scheduledAt: string;
	finishedAt: string | null;
	exitCode: number | null;
}

export interface Run {
	id: string;
	jobId: string;
	scheduledAt: string;
	startedAt: string | null;
	finishedAt: string | null;
	status: RunStatus;
	exitCode: number | null;
	signal: string | null;
	output: string;
	node: string | null;
	attempt: number;
	trigger: RunTrigger;
	error: string | null;
}

export interface User {
	id: string;
	name: string;
	role: Role;
	/** role === "admin" (the field from before roles). */
	admin: boolean;
	/** Reads every job (a viewer's or member's grant; operators and admins always do). */
	viewAll: boolean;
	createdAt: string;
}

/** What an authenticated request carries in ctx.meta.user (built by roles.ts callerOf). */
export interface AuthUser {
	id: string;
	name: string;
	/** The role this request acts with: the narrower of the user's and its token's. */
	role: Role;
	/** The user's own role. */
	userRole: Role;
	/** Reads every job: granted to the user, or implied by an operator or admin user. */
	viewAll: boolean;
	/** role === "admin": runAs root and other accounts (the job validation's `admin`). */
	admin: boolean;
	/** The token the request came with, and its name (the audit log's "who"). */
	tokenId: string;
	tokenName?: string | null;
}

/** A finished run as the worker reports it to the jobs service (times in epoch ms). */
export interface RunResult {
	runId: string;
	jobId: string;
	scheduledAt: number;
	recurring: boolean;
	status: RunStatus;
	exitCode: number | null;
	signal: string | null;
	output: string;
	startedAt: number | null;
	finishedAt: number;
	error: string | null;
	/** A retry follows: the job's status waits for it. */
	willRetry?: boolean;
}

/** The start of a run, as the run ledger records it (unique key: job, scheduledAt, attempt). */
export interface RunStart {
	jobId: string;
	scheduledAt: number;
	attempt: number;
	trigger: RunTrigger;
	node: string;
}

/** A fire that did not run: skipped by the concurrency policy, missed by the misfire policy. */
export interface RunRecord {
	jobId: string;
	scheduledAt: number;
	trigger: RunTrigger;
	status: Extract<RunStatus, "skipped" | "missed">;
	node: string;
	error?: string;
}

/** A run the ledger still has as running. */
export interface InflightRun {
	id: string;
	jobId: string;
	scheduledAt: number;
	attempt: number;
	trigger: RunTrigger;
	node: string | null;
}
