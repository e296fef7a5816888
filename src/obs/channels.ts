/**
 * @module obs/channels
 * Every diagnostics_channel name Postwire publishes on, in one place, so publishers (delivery)
 * and subscribers (metrics, tests) cannot drift apart.
 */
export const DELIVERY_CHANNELS = {
  connect: 'postwire:delivery:connect',
  transaction: 'postwire:delivery:transaction',
  framingFault: 'postwire:delivery:framing-fault',
} as const;

/** What every delivery channel carries. */
export interface DeliveryDiagnostic {
  readonly messageId: string;
  readonly host: string;
  readonly detail: string;
}

/** The transaction channel adds where it went and how many message octets went out. */
export interface DeliveryTransactionEvent extends DeliveryDiagnostic {
  /** The route's destination (the per-destination window key). */
  readonly destination: string;
  /** Message octets read from the spool and sent in this transaction (0 when no body was sent). */
  readonly octets: number;
}
