/**
 * Chooses the object store: S3 when an S3 endpoint is configured, the local folder otherwise.
 * `Config` from lib/config.ts (dataDir, s3: S3Config | null) can be passed to createObjectStore as is.
 */
import type { Readable } from "node:stream";
import { LocalObjectStore } from "./local/object-store";
import { S3ObjectStore, type S3ObjectStoreConfig } from "./s3/object-store";

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

export interface ObjectStoreConfig {
	/** The node's data folder (local objects in `<dataDir>/objects`). */
	dataDir: string;
	/** Present with a non-empty endpoint → S3. */
	s3?: S3ObjectStoreConfig | null;
}

export function createObjectStore(config: ObjectStoreConfig): ObjectStore {
	if (config.s3 && config.s3.endpoint) return new S3ObjectStore(config.s3);
	return new LocalObjectStore({ dataDir: config.dataDir });
}

/**
 * Same variables as lib/config.ts: S3_ENDPOINT, S3_BUCKET (default "cronjob"), AWS_REGION (default
 * "us-east-1"), AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, CRONJOB_DATA_DIR (default `defaultDataDir`).
 * `s3` is set only when S3_ENDPOINT is non-empty.
 */
/** True for errors that mean "the object store is down, try later" (ours or anything marked transient). */
export { isRetryable as isTransientStoreError } from "../core/errors";
