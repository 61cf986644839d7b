/**
 * The errors this client raises (writes only: reads never throw). One root, as in
 * `gossip.errors`:
 *
 *   GossipError
 *   ├── ApiUnavailable   nobody answered: no daemon, a stale socket, a time-out, a 503
 *   └── ApiRefused       the daemon said no: `status`, the message, `field` (as the
 *                        local API's `{error, field}`; 400 Invalid, 401 a wrong token,
 *                        404 NotFound, 409 Conflict, 413 TooLarge)
 */

export class GossipError extends Error {
  override name = "GossipError";
}

export class ApiUnavailable extends GossipError {
  override name = "ApiUnavailable";
}

export class ApiRefused extends GossipError {
  override name = "ApiRefused";
  constructor(
    readonly status: number,
    message: string,
    readonly field: string | null = null,
  ) {
    super(message);
  }
}
