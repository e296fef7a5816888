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
