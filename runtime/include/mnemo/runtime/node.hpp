#pragma once

#include <memory>

#include <caf/actor_system.hpp>
#include <caf/expected.hpp>

#include "mnemo/persistence/event_registry.hpp"
#include "mnemo/persistence/journal.hpp"
#include "mnemo/runtime/completion_sink.hpp"
#include "mnemo/runtime/node_config.hpp"

namespace mnemo::runtime {

/// A running node: the journal of its data directory, the event registry,
/// and the CAF actor system. Destroying it shuts down cleanly: every actor
/// spawned through `track` gets an exit message, the node waits for all
/// actors, lets the journal finish its queue, then stops the system.
class node {
 public:
  /// Opens the journal in `cfg.data_dir` and starts the actor system.
  /// `cfg` must outlive the node. Errors: persistence errors of
  /// `journal::open`, translated; `invalid_argument` for bad options.
  static caf::expected<std::unique_ptr<node>> start(node_config& cfg);

  ~node();

  node(const node&) = delete;
  node& operator=(const node&) = delete;

  caf::actor_system& system() noexcept { return *system_; }
  persistence::journal& journal() noexcept { return *journal_; }
  persistence::event_registry& registry() noexcept { return registry_; }
  completion_sink& completions() noexcept { return *sink_; }
  const node_config& config() const noexcept { return cfg_; }

  /// Remembers `handle` so that shutdown sends it an exit message.
  void track(const caf::actor& handle);

 private:
  explicit node(node_config& cfg);

  node_config& cfg_;
  persistence::event_registry registry_;
  std::unique_ptr<persistence::journal> journal_;
  std::unique_ptr<completion_sink> sink_;
  std::unique_ptr<caf::actor_system> system_;
  std::vector<caf::actor> tracked_;
};

}  // namespace mnemo::runtime
