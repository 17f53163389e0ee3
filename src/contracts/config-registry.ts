import { Type, type Static } from 'typebox';
import { CUSTOMER_CLASSES, INTERVAL_MINUTES } from './registry.js';

/** config/registry.yaml: what an unregistered meter is taken to be. */
export const RegistryConfig = Type.Object({
  defaults: Type.Object({
    customerId: Type.String({ description: 'Template; {meterId} is replaced' }),
    class: Type.Enum(CUSTOMER_CLASSES),
    tariff: Type.String({ minLength: 1 }),
    contractKw: Type.Number({ minimum: 0 }),
    feederId: Type.String({ minLength: 1 }),
    transformerId: Type.String({ minLength: 1 }),
    hasPv: Type.Boolean(),
    intervalMinutes: Type.Enum(INTERVAL_MINUTES),
  }),
});
export type RegistryConfig = Static<typeof RegistryConfig>;
