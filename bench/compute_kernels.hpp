// The compute-bound kernels of the seed articles, shared by the benchmarks:
// the 128-bit sum of squares (seed 4) and chained MD5 (seed 3), with the
// helpers that print their results.
#pragma once

#include <openssl/evp.h>

#include <algorithm>
#include <array>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>

namespace xjob::bench {

// The sum of i*i for begin <= i < end in 128 bits. The empty asm makes i
// opaque to the optimiser each iteration, so the loop can be neither
// replaced by the closed form nor vectorised: it measures looping.
__attribute__((noinline)) inline unsigned __int128 sum_squares(long begin, long end) {
  unsigned __int128 s = 0;
  for (long i = begin; i < end; ++i) {
    asm volatile("" : "+r"(i));
    s += static_cast<unsigned __int128>(i) * static_cast<unsigned __int128>(i);
  }
  return s;
}

// The same for 0 <= i < count, in closed form: the reference.
inline unsigned __int128 sum_squares_closed_form(long count) {
  auto const n = static_cast<unsigned __int128>(count);
  return n == 0 ? 0 : (n - 1) * n * (2 * n - 1) / 6;
}

inline std::string to_decimal(unsigned __int128 value) {
  if (value == 0) return "0";
  std::string digits;
  while (value != 0) {
    digits.push_back(static_cast<char>('0' + static_cast<int>(value % 10)));
    value /= 10;
  }
  std::reverse(digits.begin(), digits.end());
  return digits;
}

using digest = std::array<unsigned char, 16>;

// MD5 as OpenSSL 3 provides it, fetched once: EVP_md5() would look it up in
// the provider store (under a lock all threads share) on every use. Call it
// once before any worker starts.
inline EVP_MD const* md5_algorithm() {
  static EVP_MD const* const algorithm = [] {
    EVP_MD* const md = EVP_MD_fetch(nullptr, "MD5", nullptr);
    if (md == nullptr) throw std::runtime_error("OpenSSL has no MD5 (EVP_MD_fetch)");
    return md;
  }();
  return algorithm;
}

// MD5 of `start`, then MD5 of each previous 16-byte digest: `rounds` digests
// in all. One EVP_MD_CTX per chain, so chains share nothing inside OpenSSL.
inline digest md5_chain(std::string_view start, long rounds) {
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> const context(EVP_MD_CTX_new(), &EVP_MD_CTX_free);
  if (!context) throw std::runtime_error("EVP_MD_CTX_new failed");
  EVP_MD const* const md5 = md5_algorithm();
  digest d{};
  auto round = [&](void const* data, std::size_t size) {
    unsigned int length = 0;
    if (EVP_DigestInit_ex(context.get(), md5, nullptr) != 1 || EVP_DigestUpdate(context.get(), data, size) != 1 ||
        EVP_DigestFinal_ex(context.get(), d.data(), &length) != 1 || length != d.size())
      throw std::runtime_error("MD5 through OpenSSL's EVP interface failed");
  };
  round(start.data(), start.size());
  for (long r = 1; r < rounds; ++r) {
    digest const previous = d;
    round(previous.data(), previous.size());
  }
  return d;
}

inline std::string hex(digest const& d) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out;
  for (unsigned char byte : d) {
    out.push_back(digits[byte >> 4]);
    out.push_back(digits[byte & 15]);
  }
  return out;
}

}  // namespace xjob::bench
