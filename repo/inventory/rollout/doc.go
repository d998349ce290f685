// Package rollout decides rollouts as pure functions: which devices a wave assigns, when the next wave starts, when a rollout halts.
package rollout
