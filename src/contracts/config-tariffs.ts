import { Type, type Static } from 'typebox';
import { DAY_KINDS, WEEKDAY_NAMES, type TariffsConfig } from '../domain/tariffs.js';

/**
 * config/tariffs.yaml: named time-of-use tariffs and holiday calendars.
 * Shape only; `compileTariffs` (src/domain/tariffs.ts) checks times, bands, zones and rule coverage.
 */
const LocalDate = Type.String({ pattern: '^\\d{4}-\\d{2}-\\d{2}$' });

const TariffPeriod = Type.Object({
  from: Type.String({ pattern: '^([01]\\d|2[0-3]):[0-5]\\d$' }),
  band: Type.String({ minLength: 1, maxLength: 32 }),
}, { additionalProperties: false });

const TariffRule = Type.Object({
  months: Type.Optional(Type.Array(Type.Integer({ minimum: 1, maximum: 12 }), { minItems: 1 })),
  days: Type.Array(Type.Enum(DAY_KINDS), { minItems: 1 }),
  periods: Type.Array(TariffPeriod, { minItems: 1 }),
}, { additionalProperties: false });

const TariffDef = Type.Object({
  description: Type.Optional(Type.String()),
  timezone: Type.Optional(Type.String({ minLength: 1 })),
  bands: Type.Array(Type.String({ pattern: '^[A-Za-z][A-Za-z0-9_]{0,31}$' }), { minItems: 1 }),
  calendar: Type.Optional(Type.String({ minLength: 1 })),
  weekend: Type.Optional(Type.Array(Type.Enum(WEEKDAY_NAMES))),
  rules: Type.Array(TariffRule, { minItems: 1 }),
}, { additionalProperties: false });

const Calendar = Type.Object({
  holidays: Type.Array(LocalDate),
  workdays: Type.Optional(Type.Array(LocalDate)),
}, { additionalProperties: false });

export const TariffsConfigSchema = Type.Object({
  default: Type.String({ minLength: 1 }),
  timezone: Type.Optional(Type.String({ minLength: 1 })),
  calendars: Type.Record(Type.String(), Calendar),
  tariffs: Type.Record(Type.String({ pattern: '^[A-Za-z0-9_.-]{1,64}$' }), TariffDef),
}, { additionalProperties: false });
export type TariffsConfigSection = Static<typeof TariffsConfigSchema>;

// Compile-time check: what the schema accepts is what the domain compiles.
type SameShape = TariffsConfigSection extends TariffsConfig ? true : false;
export const TARIFFS_SCHEMA_MATCHES_DOMAIN: SameShape = true;
