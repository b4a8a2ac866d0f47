// The bare forwarder: fetch the origin with the request as received, nothing else. What it costs
// is the cost of being a Worker at all (and of Miniflare's entry worker in front of it), the
// baseline every other Worker in the benchmark is compared with.
export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    return fetch(env.ORIGIN_URL + url.pathname + url.search, request);
  },
};
