import { Type } from 'typebox';
import { TariffsConfigSchema } from '../../contracts/config-tariffs.js';
import { ErrorBody } from '../../contracts/http.js';
import { CUSTOMER_CLASSES } from '../../contracts/registry.js';
import { activeMeter, customerIntervals } from '../../domain/customer-load.js';
import { adviseTariffs, type TariffOption } from '../../domain/tariff-advice.js';
import { compileTariffOffers } from '../../domain/tariff-pricing.js';
import { compileTariffs, tariffFor } from '../../domain/tariffs.js';
import { loadSection } from '../../shared/config.js';
import { readIntervals } from '../../shared/interval-store.js';
import type { RoutePlugin } from '../app.js';
import { dayRange, ZONE_MARGIN_MS } from '../day-range.js';

/** Longest advice window: a year and a leap day. */
const MAX_RANGE_DAYS = 366;

const LocalDay = Type.String({ pattern: '^\\d{4}-\\d{2}-\\d{2}$', description: "Local date YYYY-MM-DD in the customer's tariff time zone" });
const Money = Type.String({ description: 'Decimal amount in currency units, e.g. "12.34"' });
const Minor = Type.Integer({ description: 'The same amount in integer minor units (cents)' });

const BillSchema = Type.Object({
  tariff: Type.String(),
  currency: Type.String(),
  minorDigits: Type.Integer(),
  bands: Type.Array(Type.Object({ band: Type.String(), wh: Type.Integer(), pricePerKwh: Type.String(), amountMinor: Minor, amount: Money })),
  energyMinor: Minor,
  energy: Money,
  days: Type.Integer(),
  fixedPerDay: Type.Union([Type.String(), Type.Null()]),
  fixedMinor: Minor,
  fixed: Money,
  maxDemandW: Type.Union([Type.Integer(), Type.Null()]),
  demandCharge: Type.Union([Type.String(), Type.Null()]),
  demandMinor: Minor,
  demand: Money,
  totalMinor: Minor,
  total: Money,
});

const ShiftSchema = Type.Object({
  share: Type.Number(),
  fromBand: Type.String(),
  toBand: Type.String(),
  movedWh: Type.Integer(),
  totalMinor: Minor,
  total: Money,
  savingMinor: Type.Union([Minor, Type.Null()]),
  saving: Type.Union([Money, Type.Null()]),
  shiftSavingMinor: Minor,
  shiftSaving: Money,
});

const OptionSchema = Type.Object({
  tariff: Type.String(),
  current: Type.Boolean(),
  eligible: Type.Boolean({ description: 'False only for a current tariff the customer class may no longer take' }),
  currency: Type.String(),
  amountMinor: Minor,
  amount: Money,
  savingMinor: Type.Union([Minor, Type.Null()], {
    description: 'Current bill minus this one (positive = cheaper); null when the current tariff is not priced',
  }),
  saving: Type.Union([Money, Type.Null()]),
  bill: BillSchema,
  shift: Type.Optional(ShiftSchema),
});

export const TariffAdviceResponse = Type.Object({
  customerId: Type.String(),
  class: Type.Enum(CUSTOMER_CLASSES),
  meters: Type.Array(Type.String()),
  timezone: Type.String(),
  from: Type.String(),
  to: Type.String(),
  days: Type.Integer(),
  currency: Type.Union([Type.String(), Type.Null()], { description: "The current tariff's currency; null when it is not priced" }),
  currentTariff: Type.String(),
  current: Type.Union([OptionSchema, Type.Null()], { description: 'The bill on the current tariff; null when it is not priced' }),
  options: Type.Array(OptionSchema, { description: 'Cheapest first, the current tariff among them' }),
  excluded: Type.Array(Type.Object({ tariff: Type.String(), reason: Type.Union([Type.Literal('class'), Type.Literal('unpriced'), Type.Literal('currency')]) })),
  intervals: Type.Integer(),
  estimatedIntervals: Type.Integer(),
  totalWh: Type.Integer(),
  maxDemandW: Type.Union([Type.Number(), Type.Null()]),
  shiftShare: Type.Union([Type.Number(), Type.Null()]),
});

const optionBody = (o: TariffOption) => ({ ...o, bill: { ...o.bill, bands: o.bill.bands.map((b) => ({ ...b })) } });

/**
 * The tariff advisor (scope insights:read): what the customer's measured intervals over local days [from, to) cost on
 * their tariff and on every tariff their class may take, optionally with a share of peak energy moved to the valley.
 */
export const insightRoutes: RoutePlugin = async (app, deps) => {
  // Compiled once, at start: a bad price or band fails here with the key's path, not at a request.
  const cfg = loadSection('tariffs', TariffsConfigSchema);
  const tariffs = compileTariffs(cfg, deps.config.timezone);
  const offers = compileTariffOffers(cfg, tariffs);

  app.get(
    '/api/v1/customers/:customerId/tariff-advice',
    {
      preHandler: deps.auth('insights:read'),
      schema: {
        tags: ['insights'],
        summary: "Tariff advice: the customer's intervals over local days [from, to) billed on its tariff and every tariff its class may take",
        params: Type.Object({ customerId: Type.String({ minLength: 1, maxLength: 128, pattern: '^[^\\u0000-\\u001f\\u007f]+$' }) }),
        querystring: Type.Object({
          from: LocalDay,
          to: LocalDay,
          shift: Type.Optional(
            Type.Number({ minimum: 0, maximum: 1, description: 'Share (0-1) of peak-band energy to also price as moved to the valley band' }),
          ),
        }),
        response: { 200: TariffAdviceResponse, 400: ErrorBody, 401: ErrorBody, 403: ErrorBody, 404: ErrorBody, 503: ErrorBody },
      },
    },
    async (req, reply) => {
      const { customerId } = req.params;
      const { from, to, shift } = req.query;
      dayRange(from, to, MAX_RANGE_DAYS); // validates the window (400s naming the parameter)

      const meters = await deps.registry.metersOfCustomer(customerId);
      const first = meters[0];
      if (first === undefined) return reply.code(404).send({ statusCode: 404, error: 'Not Found', message: `customer ${customerId} is not in the registry` });

      const durations = new Map(meters.map((m) => [m.meterId, m.intervalMinutes * 60_000]));
      const longest = Math.max(...durations.values());
      // Around the UTC dates by a margin that holds every zone's local days (the meters' tariffs may differ), and an
      // interval that starts before `from` and runs into it counts in part, as in billing reads; the advisor cuts.
      const fromMs = Date.parse(`${from}T00:00:00Z`) - ZONE_MARGIN_MS - longest;
      const toMs = Date.parse(`${to}T00:00:00Z`) + ZONE_MARGIN_MS;
      const perMeter = await readIntervals(deps.influx, durations, fromMs, toMs);
      const active = activeMeter(meters, (id) => (perMeter.get(id) ?? []).reduce((t, iv) => Math.max(t, iv.start), -Infinity)) ?? first;

      const advice = adviseTariffs({
        offers,
        customerClass: active.class,
        currentTariff: active.tariff,
        intervals: customerIntervals(perMeter.values(), longest),
        from,
        to,
        timezone: tariffFor(tariffs, active.tariff).timezone,
        ...(shift === undefined ? {} : { shiftShare: shift }),
      });
      const current = advice.options.find((o) => o.current);
      return {
        customerId,
        class: advice.customerClass,
        meters: meters.map((m) => m.meterId),
        timezone: advice.timezone,
        from: advice.from,
        to: advice.to,
        days: advice.days,
        currency: current?.currency ?? null,
        currentTariff: advice.currentTariff,
        current: current === undefined ? null : optionBody(current),
        options: advice.options.map(optionBody),
        excluded: advice.excluded,
        intervals: advice.intervals,
        estimatedIntervals: advice.estimatedIntervals,
        totalWh: advice.totalWh,
        maxDemandW: advice.maxDemandW,
        shiftShare: advice.shiftShare,
      };
    },
  );
};
