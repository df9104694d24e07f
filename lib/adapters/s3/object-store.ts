/**
 * Object store on S3 (or an S3-compatible server) with @aws-sdk/client-s3.
 *
 * Key `sha256/<digest>`, URL `s3://<bucket>/sha256/<digest>`. Path-style addressing. Checksums are
 * computed/validated only "WHEN_REQUIRED": with the SDK defaults (flexible checksums, aws-chunked
 * uploads) s3rver stores the chunk framing inside the object. Integrity is ours anyway: the content
 * is addressed by its SHA-256, checked before upload and after download (ArtifactCache).
 *
 * Short timeouts and few attempts, so that "store down" surfaces within a few seconds as
 * ObjectStoreUnavailable (transient) instead of hanging a request or a run.
 */
import { Readable, PassThrough } from "node:stream";
import { GetObjectCommand, HeadBucketCommand, HeadObjectCommand, PutObjectCommand, S3Client } from "@aws-sdk/client-s3";
import { FieldError } from "../../core/errors";
import { assertDigest } from "../../core/upload";
import { ObjectNotFound, ObjectStoreError, ObjectStoreUnavailable } from "../../core/errors";
import { type ObjectStore, type StoredObject } from "../object-store";
import { sha256Hex } from "../../core/upload";

export interface S3ObjectStoreConfig {
	/** e.g. http://127.0.0.1:4568 ; omitted = AWS's own endpoint for the region. */
	endpoint?: string;
	bucket: string;
	region?: string;
	accessKeyId: string;
	secretAccessKey: string;
	/** TCP connect timeout, ms (default 2000). */
	connectionTimeoutMs?: number;
	/** Time to the response headers, ms (default 10000); also the socket idle timeout while streaming. */
	requestTimeoutMs?: number;
	/** Attempts per request including the first (default 2). */
	maxAttempts?: number;
	/** Overall deadline of ping() (HeadBucket, all attempts), ms (default 3000). */
	pingTimeoutMs?: number;
}

const BUCKET_RE = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;

export class S3ObjectStore implements ObjectStore {
	readonly kind = "s3" as const;
	readonly bucket: string;
	readonly endpoint: string | undefined;
	/** The underlying client (exposed for tests and tools). */
	readonly client: S3Client;
	private readonly urlPrefix: string;
	private readonly pingTimeoutMs: number;

	constructor(config: S3ObjectStoreConfig) {
		if (!BUCKET_RE.test(config.bucket ?? "")) throw new FieldError("bucket", `invalid S3 bucket name ${JSON.stringify(config.bucket)}`);
		this.bucket = config.bucket;
		this.endpoint = config.endpoint || undefined;
		this.urlPrefix = `s3://${this.bucket}/sha256/`;
		this.pingTimeoutMs = config.pingTimeoutMs ?? 3_000;
		const requestTimeout = config.requestTimeoutMs ?? 10_000;
		this.client = new S3Client({
			endpoint: this.endpoint,
			region: config.region || "us-east-1",
			forcePathStyle: true,
			credentials: { accessKeyId: config.accessKeyId, secretAccessKey: config.secretAccessKey },
			requestChecksumCalculation: "WHEN_REQUIRED",
			responseChecksumValidation: "WHEN_REQUIRED",
			maxAttempts: config.maxAttempts ?? 2,
			requestHandler: {
				connectionTimeout: config.connectionTimeoutMs ?? 2_000,
				requestTimeout,
				throwOnRequestTimeout: true,
				socketTimeout: requestTimeout,
			},
		});
	}

	keyFor(digest: string): string {
		assertDigest(digest);
		return `sha256/${digest}`;
	}

	urlFor(digest: string): string {
		assertDigest(digest);
		return this.urlPrefix + digest;
	}

	digestFromUrl(url: string): string | null {
		if (typeof url !== "string" || !url.startsWith(this.urlPrefix)) return null;
		const digest = url.slice(this.urlPrefix.length);
		return /^[0-9a-f]{64}$/.test(digest) ? digest : null;
	}

	async put(digest: string, content: Buffer): Promise<StoredObject> {
		assertDigest(digest);
		const actual = sha256Hex(content);
		if (actual !== digest) throw new FieldError("digest", `content does not match its SHA-256 ${digest}: got ${actual}`);
		const stored: StoredObject = { url: this.urlFor(digest), key: this.keyFor(digest), digest, size: content.length };
		const size = await this.headSize(digest);
		if (size === content.length) return stored;
		try {
			await this.client.send(
				new PutObjectCommand({
					Bucket: this.bucket,
					Key: stored.key,
					Body: content,
					ContentLength: content.length,
					ContentType: "application/octet-stream",
					Metadata: { sha256: digest },
				}),
			);
		} catch (err) {
			throw this.mapError("PutObject", err, digest);
		}
		return stored;
	}

	async get(digest: string): Promise<Readable> {
		assertDigest(digest);
		let body: unknown;
		try {
			const res = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: this.keyFor(digest) }));
			body = res.Body;
		} catch (err) {
			throw this.mapError("GetObject", err, digest);
		}
		if (!(body instanceof Readable)) {
			throw new ObjectStoreError(`GetObject ${this.urlFor(digest)} returned no readable body`);
		}
		// Re-emit mid-stream failures (connection reset, idle timeout) as ObjectStoreUnavailable.
		const out = new PassThrough();
		const src = body;
		src.on("error", (err) => out.destroy(this.mapError("GetObject (body)", err, digest)));
		out.on("close", () => {
			if (!src.readableEnded) src.destroy();
		});
		src.pipe(out);
		return out;
	}

	async exists(digest: string): Promise<boolean> {
		return (await this.headSize(digest)) !== null;
	}

	async ping(): Promise<void> {
		try {
			await this.client.send(new HeadBucketCommand({ Bucket: this.bucket }), { abortSignal: AbortSignal.timeout(this.pingTimeoutMs) });
		} catch (err) {
			if ((err as Error)?.name === "AbortError") {
				throw new ObjectStoreUnavailable(`${this.where()} is unavailable: HeadBucket got no answer within ${this.pingTimeoutMs} ms`, { cause: err });
			}
			throw this.mapError("HeadBucket", err);
		}
	}

	/** Close the client's sockets. */
	close(): void {
		this.client.destroy();
	}

	/** The object's size, or null when it does not exist. */
	private async headSize(digest: string): Promise<number | null> {
		assertDigest(digest);
		try {
			const res = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: this.keyFor(digest) }));
			return res.ContentLength ?? 0;
		} catch (err) {
			const mapped = this.mapError("HeadObject", err, digest);
			if (mapped instanceof ObjectNotFound) return null;
			throw mapped;
		}
	}

	private where(): string {
		return `S3 bucket ${this.bucket}${this.endpoint ? ` at ${this.endpoint}` : ""}`;
	}

	/** SDK / network error → ObjectNotFound, ObjectStoreUnavailable (transient) or ObjectStoreError. */
	mapError(op: string, err: unknown, digest?: string): ObjectStoreError {
		if (err instanceof ObjectStoreError) return err;
		const e = (err ?? {}) as { name?: string; code?: string; $metadata?: { httpStatusCode?: number }; $fault?: string };
		const status = e.$metadata?.httpStatusCode;
		const reason = describe(err);
		if (digest && (e.name === "NoSuchKey" || e.name === "NotFound" || (status === 404 && e.name !== "NoSuchBucket"))) {
			return new ObjectNotFound(digest, this.urlFor(digest));
		}
		const transient =
			status === undefined || // no HTTP answer: connection refused/reset, DNS, timeout
			status >= 500 ||
			status === 429 ||
			status === 408 ||
			e.name === "TimeoutError" ||
			e.name === "RequestTimeout" ||
			e.name === "SlowDown";
		if (transient) {
			return new ObjectStoreUnavailable(`${this.where()} is unavailable: ${op} failed: ${reason}`, { cause: err });
		}
		return new ObjectStoreError(`${this.where()}: ${op} failed${status ? ` (HTTP ${status})` : ""}: ${reason}`, { cause: err });
	}
}

/** A readable reason, including for Node's AggregateError (empty message) on dual-stack connects. */
function describe(err: unknown): string {
	if (!(err instanceof Error)) return String(err);
	const code = (err as NodeJS.ErrnoException).code;
	if (err.message) return code && !err.message.includes(code) ? `${err.message} (${code})` : err.message;
	const inner = (err as { errors?: unknown[] }).errors;
	if (Array.isArray(inner) && inner.length > 0) return inner.map(describe).join("; ");
	return code ?? err.name;
}
