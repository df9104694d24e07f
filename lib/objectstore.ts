/**
 * Object storage for script and binary executables, keyed by content digest. Implemented on the
 * local object folder (embedded default) and on S3 (@aws-sdk/client-s3).
 */
import type { Readable } from "node:stream";
import { FieldError } from "./errors";

export interface StoredObject {
	/** The URL answered to clients as `executable`: s3://bucket/key or file:///... */
	url: string;
	key: string;
	digest: string;
	size: number;
}

export interface ObjectStore {
	readonly kind: "local" | "s3";
	/** Store content under the key derived from its SHA-256 (hex). Idempotent. */
	put(digest: string, content: Buffer): Promise<StoredObject>;
	/** Stream an object's bytes. Rejects when missing or the store is unreachable. */
	get(digest: string): Promise<Readable>;
	/** Whether the object exists. */
	exists(digest: string): Promise<boolean>;
	/** The URL for a digest (without checking it exists). */
	urlFor(digest: string): string;
	/** The digest named by one of our own URLs, or null when the URL is not ours. */
	digestFromUrl(url: string): string | null;
	/** Health check: resolves when reachable. */
	ping(): Promise<void>;
	/** Release sockets/handles (S3 client). Optional; call from a service's stopped(). */
	close?(): void;
}

/** A SHA-256 digest as we accept it everywhere: 64 lowercase hex characters. */
export const DIGEST_RE = /^[0-9a-f]{64}$/;

export function isDigest(value: unknown): value is string {
	return typeof value === "string" && DIGEST_RE.test(value);
}

/** Throws FieldError("digest") unless `value` is 64 lowercase hex characters. */
export function assertDigest(value: unknown, field = "digest"): asserts value is string {
	if (!isDigest(value)) throw new FieldError(field, `${field} must be a SHA-256 digest (64 lowercase hex characters)`);
}

/** Base class of the object store's own errors. `transient` says whether retrying later may help. */
export class ObjectStoreError extends Error {
	readonly transient: boolean = false;
	constructor(message: string, options?: { cause?: unknown }) {
		super(message, options);
		this.name = "ObjectStoreError";
	}
}

/** The store is unreachable or failing (network error, timeout, 5xx): retry later (503). */
export class ObjectStoreUnavailable extends ObjectStoreError {
	override readonly transient = true;
	readonly backend = "object store";
	constructor(message: string, options?: { cause?: unknown }) {
		super(message, options);
		this.name = "ObjectStoreUnavailable";
	}
}

/** No object under that digest (S3 NoSuchKey / 404, or a missing file). */
export class ObjectNotFound extends ObjectStoreError {
	constructor(
		public readonly digest: string,
		public readonly url: string,
	) {
		super(`object ${url} not found`);
		this.name = "ObjectNotFound";
	}
}

/** True for errors that mean "the object store is down, try later" (ours or anything marked transient). */
export function isTransientStoreError(err: unknown): boolean {
	return !!err && typeof err === "object" && (err as { transient?: unknown }).transient === true;
}
