import { Rng } from './prng.js';

/**
 * The region's weather: one daily temperature anomaly (°C off the seasonal normal) per UTC day of the run, an
 * AR(1) series so warm and cold spells last days, clipped at 2.5 sd. Interpolated linearly between day centres, so
 * the load it drives moves smoothly instead of stepping at midnight.
 */
export class WeatherSeries {
  private readonly days: Float64Array;

  constructor(
    seed: number | string,
    private readonly fromMs: number,
    toMs: number,
    w: { sigmaC: number; persistence: number },
  ) {
    const n = Math.ceil((toMs - fromMs) / 86_400_000) + 2;
    this.days = new Float64Array(n);
    if (w.sigmaC === 0) return;
    const rng = new Rng(seed, 'temperature');
    const lim = 2.5 * w.sigmaC;
    const innovation = Math.sqrt(1 - w.persistence ** 2) * w.sigmaC;
    let a = w.sigmaC * rng.normal();
    for (let d = 0; d < n; d++) {
      a = w.persistence * a + innovation * rng.normal();
      this.days[d] = Math.max(-lim, Math.min(lim, a));
    }
  }

  /** The temperature anomaly at `ms`, °C. */
  anomalyAt(ms: number): number {
    const x = (ms - this.fromMs) / 86_400_000 - 0.5;
    const i = Math.max(0, Math.floor(x));
    const f = Math.min(1, Math.max(0, x - i));
    const a = this.days[i] ?? 0;
    const b = this.days[i + 1] ?? a;
    return a + (b - a) * f;
  }
}
