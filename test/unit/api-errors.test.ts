/**
 * The API's error bodies (services/api.service.ts errorBody) for calls that reached no node: a backend
 * is down (503), not Moleculer's 404 or 502.
 */
import { Errors } from "moleculer";
import { errorBody } from "../../services/api.service";

const { BrokerDisconnectedError } = Errors as unknown as { BrokerDisconnectedError: new () => Error };

describe("errorBody for calls that reach no node", () => {
	test.each<[string, Error, string]>([
		["no node offers the service now", new Errors.ServiceNotAvailableError({ action: "manager.workers" }), "manager"],
		["the service is not registered (its node gone)", new Errors.ServiceNotFoundError({ action: "jobs.listJobs" }), "jobs"],
		["the transporter is down", new BrokerDisconnectedError(), "transporter"],
	])("%s: 503 naming the backend", (_what, err, backend) => {
		const { status, body } = errorBody(err);
		expect(status).toBe(503);
		expect(body).toMatchObject({ code: 503, type: "SERVICE_UNAVAILABLE", data: { backend } });
	});

	test("anything else keeps its code (a timeout: 504)", () => {
		expect(errorBody(new Errors.RequestTimeoutError({ action: "jobs.listJobs", nodeID: "api-1" })).status).toBe(504);
	});
});
