// Building the page's elements: the one helper the page and the plugins' modules share.

// <tag> with `attrs` set as properties (`dataset` merged into the element's data-*) and the
// children appended (strings become text; null and undefined are skipped).
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "dataset") Object.assign(node.dataset, value);
    else node[key] = value;
  }
  node.append(...children.filter((child) => child !== null && child !== undefined));
  return node;
}
