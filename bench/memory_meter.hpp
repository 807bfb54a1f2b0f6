#pragma once

// What the benchmarks measure of their own memory: the bytes malloc has
// handed out and not got back, read from the allocator that actually serves
// malloc, and the resident set. Each allocator counts only its own blocks:
// glibc's mallinfo2() reads a constant under jemalloc, so a heap figure taken
// from the wrong one is 0. A figure that cannot be measured is an error with
// its reason, never 0.

#include <dlfcn.h>
#include <malloc.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <optional>
#include <string>

/// One reading of the process's memory, in bytes.
struct memory_sample {
  /// Bytes malloc has handed out and not got back: blocks in use, plus
  /// freed blocks the allocator keeps in other threads' caches; not the
  /// allocator's own metadata.
  int64_t heap = 0;
  /// Resident anonymous pages (heap, stacks): the memory the process holds.
  int64_t rss_anon = 0;
  /// Resident file pages, such as the pages of LMDB's map that reads touched.
  int64_t rss_file = 0;
  /// All resident pages (VmRSS).
  int64_t rss = 0;
};

/// Reads the heap counter of the allocator behind malloc (jemalloc's
/// `stats.allocated` when jemalloc is the process's malloc, glibc's
/// mallinfo2() otherwise) and the resident set from /proc/self/status.
/// Open it at the start of `main`, before other threads allocate; then any
/// thread may call it.
class memory_meter {
 public:
  /// Finds which allocator serves malloc: jemalloc if the process has one
  /// whose counter sees a 4 MiB block, else glibc if its counter does.
  /// Returns nothing, with the reason in `why`, if neither does (a jemalloc
  /// built without statistics, another allocator, a sanitizer's).
  static std::optional<memory_meter> open(std::string& why) {
    std::string jemalloc_why;
    if (void* sym = ::dlsym(RTLD_DEFAULT, "mallctl")) {
      mallctl_fn ctl = nullptr;
      static_assert(sizeof(ctl) == sizeof(sym));
      std::memcpy(&ctl, &sym, sizeof(ctl));
      bool stats = false;
      size_t len = sizeof(stats);
      memory_meter jemalloc{ctl};
      if (ctl("config.stats", &stats, &len, nullptr, 0) != 0 || !stats)
        jemalloc_why =
            "jemalloc (" + object_of("mallctl") +
            ") was built without statistics (config.stats is off), so it "
            "has no stats.allocated: use one built with --enable-stats "
            "(Debian's is) or configure with -DMNEMO_JEMALLOC=OFF";
      else if (jemalloc.sees_a_probe_block(jemalloc_why))
        return jemalloc;
    }
    // jemalloc may be loaded without serving malloc: then glibc does.
    std::string glibc_why;
    memory_meter glibc{nullptr};
    if (glibc.sees_a_probe_block(glibc_why)) return glibc;
    auto malloc_from = object_of("malloc");
    why =
        (jemalloc_why.empty() ? "" : jemalloc_why + "; ") + glibc_why +
        " (malloc comes from " +
        (malloc_from.empty() ? std::string{"an unknown object"} : malloc_from) +
        ")";
    return std::nullopt;
  }

  /// "jemalloc" or "glibc": whose counter `sample` reads.
  const char* allocator() const {
    return ctl_ != nullptr ? "jemalloc" : "glibc";
  }

  /// Returns the current figures; nothing, with the reason in `why`, if a
  /// counter cannot be read.
  std::optional<memory_sample> sample(std::string& why) const {
    memory_sample s;
    auto heap = heap_bytes(why);
    if (!heap) return std::nullopt;
    s.heap = *heap;
    std::ifstream status{"/proc/self/status"};
    std::string line;
    int found = 0;
    auto field = [&](const char* name, int64_t& out) {
      auto n = std::strlen(name);
      if (line.compare(0, n, name) != 0) return;
      out = std::strtoll(line.c_str() + n, nullptr, 10) * 1024;  // "... kB"
      ++found;
    };
    while (std::getline(status, line)) {
      field("VmRSS:", s.rss);
      field("RssAnon:", s.rss_anon);
      field("RssFile:", s.rss_file);
    }
    if (found != 3) {
      why = "cannot read VmRSS, RssAnon and RssFile from /proc/self/status";
      return std::nullopt;
    }
    return s;
  }

  /// Gives the pages of freed blocks back to the kernel (jemalloc: purges
  /// every arena; glibc: malloc_trim), so that a resident-set reading taken
  /// next counts pages in use rather than the allocator's leftovers. Best
  /// effort: a failure only makes resident figures less exact.
  void release_free_pages() const {
    if (ctl_ == nullptr) {
      ::malloc_trim(0);
      return;
    }
    (void)ctl_("thread.tcache.flush", nullptr, nullptr, nullptr, 0);
    // 4096 is MALLCTL_ARENAS_ALL (jemalloc 5): every arena.
    (void)ctl_("arena.4096.purge", nullptr, nullptr, nullptr, 0);
  }

 private:
  using mallctl_fn = int (*)(const char*, void*, size_t*, void*, size_t);

  explicit memory_meter(mallctl_fn ctl) : ctl_(ctl) {}

  // The file of the object that defines `symbol` as the program resolves
  // it, or "" if unknown.
  static std::string object_of(const char* symbol) {
    void* sym = ::dlsym(RTLD_DEFAULT, symbol);
    Dl_info info{};
    if (sym == nullptr || ::dladdr(sym, &info) == 0 ||
        info.dli_fname == nullptr)
      return {};
    return info.dli_fname;
  }

  std::optional<int64_t> heap_bytes(std::string& why) const {
    if (ctl_ == nullptr) {
      auto info = ::mallinfo2();
      // uordblks leaves out the blocks malloc mapped on their own (the large
      // ones); hblkhd counts those.
      return static_cast<int64_t>(info.uordblks + info.hblkhd);
    }
    // Blocks this thread freed into its cache count as allocated.
    (void)ctl_("thread.tcache.flush", nullptr, nullptr, nullptr, 0);
    // jemalloc's statistics are a snapshot taken when "epoch" is written.
    uint64_t epoch = 1;
    size_t len = sizeof(epoch);
    if (int rc = ctl_("epoch", &epoch, &len, &epoch, len); rc != 0) {
      why = std::string{"jemalloc mallctl(\"epoch\") failed: "} +
            std::strerror(rc);
      return std::nullopt;
    }
    size_t allocated = 0;
    len = sizeof(allocated);
    if (int rc = ctl_("stats.allocated", &allocated, &len, nullptr, 0);
        rc != 0) {
      why =
          std::string{"jemalloc mallctl(\"stats.allocated\") failed: "} +
          std::strerror(rc) +
          (rc == ENOENT ? " (this jemalloc was built without statistics)" : "");
      return std::nullopt;
    }
    return static_cast<int64_t>(allocated);
  }

  // Whether the counter grows by at least a 4 MiB block while it is held;
  // says why not in `why`.
  bool sees_a_probe_block(std::string& why) const {
    constexpr size_t probe = size_t{4} << 20;
    // volatile: the compiler may not drop a malloc/free pair it can see.
    static void* volatile block = nullptr;
    auto before = heap_bytes(why);
    if (!before) return false;
    block = std::malloc(probe);
    if (block == nullptr) {
      why = "cannot allocate the 4 MiB block that checks the heap counter";
      return false;
    }
    auto during = heap_bytes(why);
    std::free(block);
    block = nullptr;
    if (!during) return false;
    if (*during - *before >= static_cast<int64_t>(probe)) return true;
    why = std::string{allocator()} + "'s heap counter grew by " +
          std::to_string(*during - *before) +
          " bytes while a 4 MiB block was allocated: it does not count this "
          "process's blocks";
    return false;
  }

  mallctl_fn ctl_;  // null: glibc's counters
};
