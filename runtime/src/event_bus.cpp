#include "mnemo/runtime/event_bus.hpp"

#include <atomic>
#include <memory>
#include <unordered_map>
#include <utility>

#include <caf/actor_cast.hpp>
#include <caf/actor_system.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/send.hpp>
#include <caf/stateful_actor.hpp>
#include <caf/system_messages.hpp>

#include "mnemo/persistence/journal.hpp"
#include "mnemo/runtime/completion_sink.hpp"
#include "mnemo/runtime/error.hpp"

namespace mnemo::runtime {

namespace {

/// Internal: the journal committed; read the newest head from the feed.
using wake_atom = caf::atom_constant<caf::atom("mn_wake")>;

// Shared by the journal listener (writer thread) and the bus actor.
struct head_feed {
  std::atomic<uint64_t> head{0};
  // Set by the listener when it posts a wake-up; cleared by the bus before
  // it reads `head`. A commit therefore either finds it set (and the pending
  // wake-up will read its head) or posts a wake-up itself: the last head of
  // a burst is never lost. Sequentially consistent operations throughout.
  std::atomic<bool> pending{false};

  void raise_to(uint64_t position) {
    auto current = head.load();
    while (current < position &&
           !head.compare_exchange_weak(current, position)) {
      // `current` was reloaded; retry while it is still lower.
    }
  }
};

struct subscriber {
  caf::actor handle;
  // Newest position this subscriber was told (by notification or by the
  // answer to its subscription): positions only grow.
  uint64_t told = 0;
  // A notification is unanswered: send nothing more until it is.
  bool awaiting = false;
  // Identifies the unanswered notification: a late answer to one sent
  // before an unsubscribe must not count for a later subscription.
  uint64_t ticket = 0;
};

class bus_state;
using bus_actor = caf::stateful_actor<bus_state>;

class bus_state {
 public:
  static inline const char* name = "mnemo.event_bus";

  explicit bus_state(bus_actor* self) : self_(self) {}

  void set_feed(std::shared_ptr<head_feed> feed) { feed_ = std::move(feed); }

  caf::result<uint64_t> subscribe(const caf::actor& who) {
    if (!who)
      return make_error(errc::invalid_argument,
                        "event bus: cannot subscribe an anonymous sender or "
                        "an invalid actor handle; pass a valid caf::actor");
    auto head = feed_->head.load();
    auto [i, added] = subscribers_.emplace(who.address(), subscriber{who});
    if (added) self_->monitor(who);
    if (i->second.told < head) i->second.told = head;
    return head;
  }

  bool unsubscribe(const caf::actor& who) {
    auto i = who ? subscribers_.find(who.address()) : subscribers_.end();
    if (i == subscribers_.end()) return false;
    self_->demonitor(who);
    erase(i);
    return true;
  }

  void wake() {
    ++wakeups_;
    // Clear before reading the head; see `head_feed::pending`.
    feed_->pending.exchange(false);
    auto head = feed_->head.load();
    for (auto& [addr, sub] : subscribers_) notify(addr, sub, head);
  }

  void answered(const caf::actor_addr& who, uint64_t ticket,
                const caf::error& err) {
    auto i = subscribers_.find(who);
    // Unsubscribed or gone meanwhile, perhaps subscribed again.
    if (i == subscribers_.end() || !i->second.awaiting ||
        i->second.ticket != ticket)
      return;
    if (err == caf::sec::request_receiver_down) {
      erase(i);  // the down message will find nothing left to do
      return;
    }
    i->second.awaiting = false;
    --awaiting_;
    notify(who, i->second, feed_->head.load());
  }

  void down(const caf::down_msg& msg) {
    auto i = subscribers_.find(msg.source);
    if (i != subscribers_.end()) erase(i);
  }

  caf::message stats() const {
    return caf::make_message(subscribers_.size(), awaiting_, notifications_,
                             wakeups_);
  }

 private:
  using map_type = std::unordered_map<caf::actor_addr, subscriber>;

  void notify(const caf::actor_addr& addr, subscriber& sub, uint64_t head) {
    if (sub.awaiting || head <= sub.told) return;
    sub.awaiting = true;
    sub.told = head;
    sub.ticket = ++notifications_;
    ++awaiting_;
    auto self = self_;
    auto ticket = sub.ticket;
    self_->request(sub.handle, caf::infinite, head_atom::value, head)
        .then([self, addr,
               ticket] { self->state.answered(addr, ticket, caf::error{}); },
              [self, addr, ticket](caf::error& err) {
                self->state.answered(addr, ticket, err);
              });
  }

  void erase(map_type::iterator i) {
    if (i->second.awaiting) --awaiting_;
    subscribers_.erase(i);
  }

  bus_actor* self_;
  std::shared_ptr<head_feed> feed_;
  map_type subscribers_;
  size_t awaiting_ = 0;
  uint64_t notifications_ = 0;
  uint64_t wakeups_ = 0;
};

caf::behavior bus_main(bus_actor* self, std::shared_ptr<head_feed> feed) {
  self->state.set_feed(std::move(feed));
  self->set_down_handler([self](caf::down_msg& msg) { self->state.down(msg); });
  return {
      [self](subscribe_atom) {
        return self->state.subscribe(
            caf::actor_cast<caf::actor>(self->current_sender()));
      },
      [self](subscribe_atom, const caf::actor& who) {
        return self->state.subscribe(who);
      },
      [self](unsubscribe_atom) {
        return self->state.unsubscribe(
            caf::actor_cast<caf::actor>(self->current_sender()));
      },
      [self](unsubscribe_atom, const caf::actor& who) {
        return self->state.unsubscribe(who);
      },
      [self](wake_atom) { self->state.wake(); },
      [self](stats_atom) { return self->state.stats(); },
  };
}

}  // namespace

event_bus_link spawn_event_bus(caf::actor_system& sys, persistence::journal& j,
                               completion_sink& sink) {
  auto feed = std::make_shared<head_feed>();
  event_bus_link link;
  link.actor = sys.spawn(bus_main, feed);
  link.listener = j.subscribe([feed, &sink, bus = link.actor](uint64_t head) {
    // On the writer thread: publish the head, wake the bus at most once
    // while a wake-up is pending, never wait.
    feed->raise_to(head);
    if (feed->pending.exchange(true)) return;
    // Balances `deferred_completions`: every post must be expected.
    sink.expect();
    sink.post([bus] { caf::anon_send(bus, wake_atom::value); });
  });
  // Commits made before the listener was registered told nobody.
  feed->raise_to(j.head_position());
  return link;
}

}  // namespace mnemo::runtime
