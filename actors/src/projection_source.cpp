// The two sources of a projection: this node's journal, and another
// member's journal or a shard's log through the cluster endpoint
// (journal_feed.hpp).

#include "projection_source.hpp"

#include <algorithm>
#include <atomic>

#include <caf/actor_cast.hpp>

#include "mnemo/runtime/cluster.hpp"
#include "mnemo/runtime/error.hpp"
#include "mnemo/runtime/event_bus.hpp"
#include "mnemo/runtime/journal_feed.hpp"
#include "mnemo/runtime/restart_policy.hpp"

namespace mnemo::actors::detail {

namespace {

using refetch_atom = caf::atom_constant<caf::atom("mn_refetch")>;

// This node's journal: reads are synchronous, heads come from the event
// bus (without one, only the reads themselves find new events).
class journal_source final : public projection_source {
 public:
  journal_source(caf::event_based_actor* self, persistence::journal* journal,
                 caf::actor event_bus, source_hooks hooks)
      : self_(self),
        journal_(journal),
        bus_(std::move(event_bus)),
        hooks_(std::move(hooks)) {}

  persistence::journal* local_journal() const override { return journal_; }

  void subscribe() override {
    if (!bus_) return;
    self_->request(bus_, caf::infinite, runtime::subscribe_atom::value)
        .then([this](uint64_t head) { hooks_.head(head); },
              [this](caf::error& err) { hooks_.fail(std::move(err)); });
  }

  caf::message_handler handlers() override {
    return {[this](runtime::head_atom, uint64_t head) { hooks_.head(head); }};
  }

  void read(uint64_t after, size_t max, read_done done) override {
    auto batch = journal_->read_all(after + 1, max);
    if (!batch) {
      hooks_.fail(runtime::to_caf_error(batch.error()));
      return done(std::nullopt);
    }
    done(std::move(*batch));
  }

  void read_event(uint64_t position, event_done done) override {
    auto events = journal_->read_all(position, 1);
    if (!events) return done(runtime::to_caf_error(events.error()));
    if (events->empty() || events->front().position != position)
      return done(std::optional<persistence::event_envelope>{});
    done(std::optional<persistence::event_envelope>{events->front()});
  }

  bool available() const override { return true; }

  std::string problem() const override { return {}; }

  std::function<uint64_t()> head_gauge() const override {
    return [j = journal_] { return j->head_position(); };
  }

 private:
  caf::event_based_actor* self_;
  persistence::journal* journal_;
  caf::actor bus_;
  source_hooks hooks_;
};

// Another member's journal, or a shard's log: heads are notified by the
// cluster endpoint, batches pulled through it. While the source is away the
// projection waits: for the next head notification (it comes when the
// member rejoins), or for a retry with backoff.
class feed_source final : public projection_source {
 public:
  feed_source(caf::event_based_actor* self, runtime::cluster* cluster,
              std::string source, runtime::restart_policy backoff,
              source_hooks hooks)
      : self_(self),
        cluster_(cluster),
        source_(std::move(source)),
        backoff_(backoff),
        hooks_(std::move(hooks)) {}

  persistence::journal* local_journal() const override { return nullptr; }

  void subscribe() override {
    self_
        ->request(cluster_->endpoint(), caf::infinite,
                  runtime::feed_follow_atom::value, source_)
        .then(
            [this](uint64_t head, bool connected) {
              available_ = connected;
              on_head(head);
            },
            [this](caf::error& err) { hooks_.fail(std::move(err)); });
  }

  caf::message_handler handlers() override {
    return {
        [this](runtime::feed_head_atom, const std::string&, uint64_t head) {
          available_ = true;
          on_head(head);
        },
        [this](runtime::feed_down_atom, const std::string&) {
          available_ = false;
        },
        [this](refetch_atom) {
          refetch_pending_ = false;
          hooks_.wake();
        },
    };
  }

  void read(uint64_t after, size_t max, read_done done) override {
    self_
        ->request(cluster_->endpoint(), caf::infinite,
                  runtime::feed_pull_atom::value, source_, after + 1,
                  static_cast<uint64_t>(std::max<size_t>(max, 1)))
        .then(
            [this, done](runtime::feed_batch_ptr& batch) {
              available_ = true;
              failures_ = 0;
              problem_.clear();
              on_head(batch->head);
              done(batch->events);
            },
            [this, done](caf::error& err) {
              failed(err);
              done(std::nullopt);
            });
  }

  void read_event(uint64_t position, event_done done) override {
    self_
        ->request(cluster_->endpoint(), caf::infinite,
                  runtime::feed_pull_atom::value, source_, position,
                  uint64_t{1})
        .then(
            [done, position](runtime::feed_batch_ptr& batch) {
              if (batch->events.empty() ||
                  batch->events.front().position != position)
                return done(std::optional<persistence::event_envelope>{});
              done(std::optional<persistence::event_envelope>{
                  batch->events.front()});
            },
            [done](caf::error& err) { done(std::move(err)); });
  }

  bool available() const override { return available_; }

  std::string problem() const override { return problem_; }

  std::function<uint64_t()> head_gauge() const override {
    return [known = known_] { return known->load(std::memory_order_relaxed); };
  }

 private:
  // A head of the source (notification or batch). One below the offset
  // means its journal lost events the projection has handled (a new data
  // directory, or a crash under a non-sync durability mode): say so, since
  // the events it writes next at those positions would be skipped.
  void on_head(uint64_t head) {
    auto offset = hooks_.offset();
    if (head != 0 && head < offset)
      problem_ = "source '" + source_ + "' reports head " +
                 std::to_string(head) + ", below this projection's offset " +
                 std::to_string(offset) +
                 ": its journal lost events; reset or rebuild";
    if (head > known_->load(std::memory_order_relaxed))
      known_->store(head, std::memory_order_relaxed);
    hooks_.head(head);
  }

  // The source is away or answered garbage: retry with backoff (a head
  // notification may come first).
  void failed(const caf::error& err) {
    available_ = false;
    problem_ = "source '" + source_ + "': " + runtime::describe(err);
    ++failures_;
    if (refetch_pending_) return;
    refetch_pending_ = true;
    self_->delayed_send(self_, runtime::backoff_delay(backoff_, failures_),
                        refetch_atom::value);
  }

  caf::event_based_actor* self_;
  runtime::cluster* cluster_;
  std::string source_;
  runtime::restart_policy backoff_;
  source_hooks hooks_;
  // Known only once the endpoint said so.
  bool available_ = false;
  std::string problem_;
  uint64_t failures_ = 0;
  bool refetch_pending_ = false;
  std::shared_ptr<std::atomic<uint64_t>> known_ =
      std::make_shared<std::atomic<uint64_t>>(0);
};

}  // namespace

std::unique_ptr<projection_source> open_source(caf::event_based_actor* self,
                                               const projection_context& ctx,
                                               const projection_spec& spec,
                                               source_hooks hooks) {
  if (spec.source.empty())
    return std::make_unique<journal_source>(self, ctx.journal, ctx.event_bus,
                                            std::move(hooks));
  return std::make_unique<feed_source>(self, ctx.cluster, spec.source,
                                       spec.options.retry_backoff,
                                       std::move(hooks));
}

}  // namespace mnemo::actors::detail
