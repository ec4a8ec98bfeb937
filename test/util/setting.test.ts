import { describe, expect, it } from 'vitest';
import { isClipError } from '../../src/util/errors.js';
import { wholeNumberSetting } from '../../src/util/setting.js';
import { thrown, withEnv } from '../support/env.js';

describe('a whole-number setting', () => {
  it('takes the option first, then the environment; unset or empty is no setting', () => {
    expect(withEnv('CLIP_TEST_N', '7', () => wholeNumberSetting({ env: 'CLIP_TEST_N' }, 1, 10, 'things'))).toBe(7);
    expect(withEnv('CLIP_TEST_N', '7', () => wholeNumberSetting({ value: 3, option: 'n', env: 'CLIP_TEST_N' }, 1, 10, 'things'))).toBe(3);
    expect(withEnv('CLIP_TEST_N', '', () => wholeNumberSetting({ env: 'CLIP_TEST_N' }, 1, 10, 'things'))).toBeUndefined();
    delete process.env.CLIP_TEST_N;
    expect(wholeNumberSetting({ env: 'CLIP_TEST_N' }, 1, 10, 'things')).toBeUndefined();
  });

  it('refuses a value that is not a whole number in range with EINVAL naming where it came from', () => {
    for (const bad of ['0', '11', '2.5', 'lots', '1e400']) {
      const err = withEnv('CLIP_TEST_N', bad, () => thrown(() => wholeNumberSetting({ env: 'CLIP_TEST_N' }, 1, 10, 'things')));
      expect(isClipError(err, 'EINVAL'), bad).toBe(true);
      expect((err as Error).message).toBe(`CLIP_TEST_N=${bad}: not a whole number of things from 1 to 10`);
    }
    const err = thrown(() => wholeNumberSetting({ value: 99, option: 'maxThings', env: 'CLIP_TEST_N' }, 1, 10, 'things'));
    expect((err as Error).message).toBe('maxThings=99: not a whole number of things from 1 to 10');
  });
});
