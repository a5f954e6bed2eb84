// css.d.ts — CSS imports are bundled by esbuild into dist/webview/main.css; they export nothing.
declare module '*.css';
